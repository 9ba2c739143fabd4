"""Rendering deploy/kustomize without the kustomize binary: `resources`, `images` and strategic
merge `patches`, the only features our overlays use. Where kubectl is installed the tests check
this rendering against `kubectl kustomize`, so the two cannot drift apart unnoticed."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import yaml

MERGE_KEYS = ("containerPort", "mountPath", "name")
"""How strategic merge matches list items (ports by containerPort, mounts by path, the rest by name);
lists without them (args, tolerations) are replaced, as Kubernetes' patch strategies say."""


def load_objects(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge_key(items: list) -> str | None:
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    return next((k for k in MERGE_KEYS if all(k in i for i in items)), None)


def strategic_merge(base: object, patch: object) -> object:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        key = _merge_key(base + patch)
        if key is None:
            return copy.deepcopy(patch)
        merged = [copy.deepcopy(i) for i in base]
        for item in patch:
            at = next((n for n, old in enumerate(merged) if old[key] == item[key]), None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = strategic_merge(merged[at], item)
        return merged
    return copy.deepcopy(patch)


def _set_images(obj: dict, images: list[dict]) -> None:
    containers = obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    for container in containers:
        name = container["image"].split("@")[0].rsplit(":", 1)[0]
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image['newTag']}"


def render(folder: Path) -> list[dict]:
    """The objects of the kustomization in `folder`, as `kubectl kustomize folder` gives them."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = folder / resource
        objects += render(path) if path.is_dir() else load_objects(path)
    for patch_ref in kustomization.get("patches", []):
        for patch in load_objects(folder / patch_ref["path"]):
            at = [n for n, o in enumerate(objects) if (o["kind"], o["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])]
            assert len(at) == 1, f"patch {patch_ref['path']} matches {len(at)} objects"
            objects[at[0]] = strategic_merge(objects[at[0]], patch)
    for obj in objects:
        _set_images(obj, kustomization.get("images", []))
    return objects


def kubectl_render(folder: Path) -> list[dict] | None:
    """`kubectl kustomize folder`, or None where kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    out = subprocess.run([kubectl, "kustomize", str(folder)], check=True, capture_output=True, text=True, timeout=60).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def canonical(objects: list[dict]) -> list[str]:
    """Objects compared regardless of the order of objects and of keyed list items."""
    def sort_lists(value: object) -> object:
        if isinstance(value, dict):
            return {k: sort_lists(v) for k, v in value.items()}
        if isinstance(value, list):
            items = [sort_lists(v) for v in value]
            return sorted(items, key=lambda i: json.dumps(i, sort_keys=True)) if _merge_key(items) else items
        return value
    return sorted(json.dumps(sort_lists(o), sort_keys=True) for o in objects)
