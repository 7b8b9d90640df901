"""vtjax LoRA adapters <-> a PEFT adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``).

PEFT names an adapter tensor after the torch module it wraps, under the
PeftModel's prefix: ``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``
([r, in]) and ``...lora_B.weight`` ([out, r]), the module being the HF Linear of
``mapping.TEXT_TABLE`` / ``VISION_TABLE``. vtjax holds A as [in..., r] and B as
[r, out...] (heads split like the kernel), so the conversion is a transpose
and a reshape, in the kernel's own flattening order. The scale is PEFT's
``lora_alpha / r`` (``/ sqrt(r)`` with ``use_rslora``). Nothing here imports
``peft``: the files are written and read with safetensors and json.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from vtjax.convert.mapping import ParamLink, canonical_hf_name, links
from vtjax.convert.safetensors_io import CheckpointError
from vtjax.models.qwen2_5_vl import Qwen25VLConfig, abstract_params
from vtjax.models.qwen2_5_vl.lora import LoraSpec, module_path

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PREFIX = "base_model.model."  # PeftModel(Qwen2_5_VLForConditionalGeneration) module prefix


@dataclasses.dataclass(frozen=True)
class AdapterLink:
    """One adapted projection: its HF module name and its kernel's link (one layer of it when stacked)."""

    module: str  # HF module, e.g. "model.layers.3.self_attn.q_proj"
    kernel: ParamLink  # the kernel's link in mapping's table

    @property
    def module_path(self) -> tuple[str, ...]:  # the vtjax module holding kernel, lora_a, lora_b
        return self.kernel.path[:-1]


def adapter_links(config: Qwen25VLConfig, spec: LoraSpec) -> list[AdapterLink]:
    """The kernels ``spec`` selects, with their HF module names (kernel layouts only)."""
    out = []
    for link in links(config.replace(lora=None)):
        if link.layout in ("linear", "linear2") and spec.selects(module_path(link.path[:-1])):
            out.append(AdapterLink(link.hf_name[:-len(".weight")], link))
    return out


def write_peft_adapter(directory: Path, config: Qwen25VLConfig, get, *, base_model: str = "") -> int:
    """Writes the adapters of ``config.lora`` as a PEFT directory; returns the number of adapted modules.

    ``get(path)`` returns a vtjax param (the whole stacked array for scanned layers).
    """
    spec = config.lora
    tensors = {}
    for link in adapter_links(config, spec):
        a, b = (np.asarray(get(link.module_path + (name,)), np.float32) for name in ("lora_a", "lora_b"))
        if link.kernel.layer is not None:
            a, b = a[link.kernel.layer], b[link.kernel.layer]
        tensors[f"{PREFIX}{link.module}.lora_A.weight"] = np.ascontiguousarray(a.reshape(-1, spec.rank).T)
        tensors[f"{PREFIX}{link.module}.lora_B.weight"] = np.ascontiguousarray(b.reshape(spec.rank, -1).T)
    modules = sorted({link.module for link in adapter_links(config, spec)})
    save_file(tensors, Path(directory) / WEIGHTS_FILE, metadata={"format": "pt"})
    peft_config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base_model or None,
        "r": spec.rank, "lora_alpha": spec.alpha, "lora_dropout": spec.dropout, "use_rslora": spec.rslora,
        "target_modules": modules, "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
        "init_lora_weights": True, "inference_mode": True, "use_dora": False, "rank_pattern": {},
        "alpha_pattern": {}, "layers_to_transform": None, "layers_pattern": None,
    }
    (Path(directory) / CONFIG_FILE).write_text(json.dumps(peft_config, indent=2))
    return len(modules)


def read_peft_adapter(directory: str | os.PathLike, config: Qwen25VLConfig) -> tuple[LoraSpec, dict]:
    """A PEFT LoRA directory -> (its ``LoraSpec``, {vtjax param path: float32 array}) for ``config``'s layout
    (stacked arrays when it scans layers). Refuses what vtjax's adapters cannot express."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory} is not a PEFT adapter directory (expected {CONFIG_FILE} and "
                              f"{WEIGHTS_FILE}; save it with PeftModel.save_pretrained)")
    peft_config = json.loads(config_path.read_text())
    _check_supported(peft_config, config_path)
    weights = load_file(weights_path)
    modules = {}
    for name, tensor in weights.items():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", name)
        if not match:
            raise CheckpointError(f"{weights_path}: unexpected tensor {name!r} (only lora_A / lora_B weights)")
        module = canonical_hf_name(match.group(1) + ".weight")[:-len(".weight")]
        modules.setdefault(module, {})[match.group(2)] = tensor
    ranks = {t.shape[0] for m in modules.values() for k, t in m.items() if k == "A"}
    if ranks != {int(peft_config["r"])}:
        raise CheckpointError(f"{weights_path}: lora_A ranks {sorted(ranks)} differ from r={peft_config['r']}")
    by_module = {link.hf_name[:-len(".weight")]: link for link in links(config.replace(lora=None))
                 if link.layout in ("linear", "linear2")}
    unknown = sorted(set(modules) - set(by_module))
    if unknown:
        raise CheckpointError(f"{weights_path}: adapters on modules this model has no projection for: {unknown}")
    paths = sorted({module_path(by_module[m].path[:-1]) for m in modules})
    spec = LoraSpec(rank=int(peft_config["r"]), alpha=float(peft_config["lora_alpha"]),
                    dropout=float(peft_config.get("lora_dropout") or 0.0),
                    targets="^(" + "|".join(map(re.escape, paths)) + ")$", rslora=bool(peft_config.get("use_rslora")))
    chosen = [m for m, link in by_module.items() if spec.selects(module_path(link.path[:-1]))]
    missing = sorted(set(chosen) - set(modules))
    if missing:  # vtjax adapts every layer of a selected projection
        raise CheckpointError(f"{weights_path}: adapters on only some layers of {paths}; missing {missing[:4]}"
                              f"{' ...' if len(missing) > 4 else ''}")
    return spec, _to_params(config, spec, modules, by_module)


def _to_params(config, spec, modules, by_module) -> dict:
    out: dict = {}
    for module, pair in modules.items():
        link = by_module[module]
        kernel_shape = _kernel_shape(config, link)
        n_in = 1 if link.layout == "linear" else 2  # kernel (in, out...) or (heads, head_dim, out)
        a = pair["A"].astype(np.float32).T.reshape(kernel_shape[:n_in] + (spec.rank,))
        b = pair["B"].astype(np.float32).T.reshape((spec.rank,) + kernel_shape[n_in:])
        for name, value in (("lora_a", a), ("lora_b", b)):
            path = link.path[:-1] + (name,)
            if link.layer is None:
                out[path] = value
            else:
                depth = config.vision.depth if path[0] == "visual" else config.text.num_hidden_layers
                out.setdefault(path, np.zeros((depth,) + value.shape, np.float32))[link.layer] = value
    return out


def _kernel_shape(config: Qwen25VLConfig, link: ParamLink) -> tuple[int, ...]:
    node = _base_shapes(config.replace(lora=None))
    for key in link.path:
        node = node[key]
    return tuple(node.shape[1:] if link.layer is not None else node.shape)


@functools.lru_cache(maxsize=4)
def _base_shapes(config: Qwen25VLConfig):
    return abstract_params(config)


def _check_supported(peft_config: dict, path: Path) -> None:
    if peft_config.get("peft_type") != "LORA":
        raise CheckpointError(f"{path}: peft_type={peft_config.get('peft_type')!r}; only LORA adapters convert")
    unsupported = [f"{k}={peft_config[k]!r}" for k, plain in (("use_dora", False), ("bias", "none"),
                                                              ("fan_in_fan_out", False))
                   if peft_config.get(k, plain) != plain]
    unsupported += [f"{k}={peft_config[k]!r}" for k in ("modules_to_save", "rank_pattern", "alpha_pattern",
                                                          "layers_to_transform") if peft_config.get(k)]
    if unsupported:
        raise CheckpointError(f"{path}: {', '.join(unsupported)} is not supported (vtjax adapters are plain LoRA "
                              "with one rank and alpha on every layer of the modules they target)")
