"""The real-time decision API and the one scoring implementation it shares with batch scoring."""
