"""Monitoring: the retraining policy, Evidently reports and metrics, risk-manager dashboards, vintages."""
