"""Run folders written by hand for tests, as another tool would leave them: a valid version-2
manifest (`results.Manifest`) with only the facts a test cares about set."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from robustbench_mm.results import DatasetInfo, Manifest, ModelInfo, ProtocolInfo


def fake_manifest(models: list[str] | list[dict] = (), *, task: str = "classification", num_classes: int | None = None,
                  protocol: str = "fake", protocol_hash: str = "ab" * 32, seeds=(0,), **fields) -> Manifest:
    """A complete run's manifest; `models` as names or {name, sha256?, config?} entries."""
    entries = [m if isinstance(m, dict) else {"name": m} for m in models]
    manifest = Manifest(
        protocol=ProtocolInfo(protocol, protocol_hash, f"{protocol}.toml", 0, ("accuracy",)),
        models=tuple(ModelInfo(e["name"], e.get("sha256", "0" * 64), e.get("config", {})) for e in entries),
        dataset=DatasetInfo("fake", "test", "fake", "cd" * 32, 0, task, num_classes, {}),
        seeds=tuple(seeds), rng="lowbias32-int32-erfinv/2", amp=False, keep_probabilities=False, nonfinite="error",
        plugins=(), package={"robustbench_mm": "0.1.0"}, complete=True, started="2026-11-23T10:00:00+00:00",
        cell_seconds={},
    )
    return replace(manifest, **fields)


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=1))
