"""Register a joint model in MLflow: the guest's part and the host part's receipt as artifacts, PSI lineage."""

from __future__ import annotations

import dataclasses
from typing import Any

from model_registry.lineage import Lineage
from model_registry.registry import ModelVersionRef, register_model
from orchard.federated.guest import GuestOutcome, JointModel
from orchard.settings import Settings

JOINT_MODEL_NAME = "precredit_response_joint"
CODE_VERSION = "orchard.federated/hetero-lr-v2"
TREE_CODE_VERSION = "orchard.federated/secureboost-v1"
PROTOCOLS = {
    "hetero_lr": "X25519 DH-PSI + two-key Paillier hetero LR (Taylor residual)",
    "secureboost": "X25519 DH-PSI + hetero SecureBoost (guest-key Paillier histograms, host-held splits)",
}


def register_joint_model(settings: Settings, outcome: GuestOutcome, job: dict[str, Any]) -> ModelVersionRef:
    """Register the joint model of a finished job, hetero LR or SecureBoost (idempotent by job id)."""
    model = outcome.model
    tree = not isinstance(model, JointModel)
    lineage = Lineage(
        batch_ids=list(job.get("batch_ids", [])),
        data_sha256=str(job.get("guest_sha256") or outcome.intersection_sha256),
        validation_ids=[],
        feature_service=f"federated:{outcome.job_id}",
        code_version=TREE_CODE_VERSION if tree else CODE_VERSION,
        train_window=str(job.get("train_window", "all-mature")),
        extra={
            "intersection": {**outcome.psi, "sha256_of_matched_keys": outcome.intersection_sha256},
            "host_part": {"id": model.host_part_id, "sha256": model.host_part_sha256},
        },
    )
    if isinstance(model, JointModel):
        guest_part: dict[str, Any] = {
            "features": model.guest_scaler.features,
            "weights": model.guest_weights,
            "scaler": dataclasses.asdict(model.guest_scaler),
        }
    else:
        guest_part = {
            "kind": "secureboost",
            "features": model.guest_features,
            "fill": model.guest_fill,
            "base_score": model.trees.base_score,
            "edges": [e.tolist() for e in model.trees.edges],
            "trees": [t.as_dict() for t in model.trees.trees],
            "host_nodes": [list(n) for n in model.host_nodes],
        }
    artifacts: dict[str, dict | str] = {
        "guest_part.json": guest_part,
        "host_part.json": {
            "part_id": model.host_part_id,
            "sha256": model.host_part_sha256,
            "kind": model.kind,
            "held_by": "host party (its "
            + ("split features and thresholds" if tree else "weights")
            + " never leave the platform)",
        },
        "intersection.json": {**outcome.psi, "sha256_of_matched_keys": outcome.intersection_sha256},
        "training.json": outcome.summary(),
        "reference_profile.json": outcome.reference,
    }
    config = job.get("sb_config", {}) if tree else job.get("config", {})
    return register_model(
        settings,
        model.name,
        model,
        train_key=f"federated-{outcome.job_id}",
        metrics={k: float(v) for k, v in outcome.metrics.items()},
        params={
            **{k: v for k, v in config.items() if isinstance(v, (int, float, str))},
            "protocol": PROTOCOLS[model.kind],
            "host_part_id": model.host_part_id,
        },
        lineage=lineage,
        input_example=outcome.example,
        artifacts=artifacts,
    )
