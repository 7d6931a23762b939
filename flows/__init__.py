"""Prefect flows: thin wiring of the lifecycle's steps into flows, tasks and deployments."""
