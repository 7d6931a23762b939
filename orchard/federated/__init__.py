"""Vertical federated joint modeling: ECDH PSI and Paillier hetero LR between two party processes."""
