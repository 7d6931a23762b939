"""MLflow model registry: registration with lineage, gates, aliases and the governance history."""
