"""Presets: which model, which SAEs, which dtype. Read from ``presets.toml`` (data, not code)."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from bench.errors import UsageError, did_you_mean

DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Preset:
    """A model + SAE configuration; ``sae_ids`` are SAELens ids in ``sae_release``."""

    name: str
    model: str
    sae_release: str
    sae_ids: tuple[str, ...]
    dtype: str = "float32"
    description: str = ""
    # The dtype on a CUDA device where it differs (e.g. bfloat16 for Gemma: its memory plan fits an
    # 80 GiB GPU in bf16, not in fp32); `dtype` stays the CPU's.
    cuda_dtype: str = ""
    # Architecture dims for `bench plan` without weights or hub access (the ``[<preset>.arch]`` table);
    # bench.plan.estimate cross-checks them against TransformerLens's / SAELens's own configs where those are offline.
    arch: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.sae_ids:
            raise UsageError(f"preset {self.name!r}: sae_ids is empty; name at least one SAE")
        for key in ("dtype", "cuda_dtype"):
            value = getattr(self, key)
            if value and value not in DTYPES:
                raise UsageError(f"preset {self.name!r}: {key} {value!r} is not one of {', '.join(DTYPES)}")

    def dtype_on(self, device: str) -> str:
        """The dtype this preset runs in on ``device``."""
        return self.cuda_dtype if self.cuda_dtype and str(device).startswith("cuda") else self.dtype

    def with_dtype(self, dtype: str | None, device: str = "cpu") -> Preset:
        """This preset in ``dtype`` (None: its own dtype on ``device``)."""
        return dataclasses.replace(self, dtype=dtype or self.dtype_on(device), cuda_dtype="")

    @property
    def is_embedded(self) -> bool:
        return self.model == "embedded" or self.model.startswith("embedded-")


# A preset table's fields: name -> (required, the type its value must have, in words).
FIELDS = {"model": (True, str, "a string (TransformerLens model name, or embedded)"),
          "sae_release": (True, str, "a string (SAELens release)"),
          "sae_ids": (True, list, "a list of SAELens SAE ids"),
          "dtype": (False, str, f"one of {', '.join(DTYPES)}"),
          "cuda_dtype": (False, str, f"one of {', '.join(DTYPES)} (the dtype on CUDA, where it differs)"),
          "description": (False, str, "a string"),
          "arch": (False, dict, "a table of architecture sizes")}


def _parse(table: dict, source: str) -> dict[str, Preset]:
    """Presets from a TOML table, each field checked: one line naming the file, preset and field."""
    out = {}
    for name, fields in table.items():
        where = f"{source}: preset [{name}]"
        if not isinstance(fields, dict):
            raise UsageError(f"{where}: expected a table of fields ({', '.join(FIELDS)}), got {type(fields).__name__}")
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise UsageError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
        for key, (required, kind, words) in FIELDS.items():
            if key not in fields:
                if required:
                    raise UsageError(f"{where}: field {key!r} is missing ({words})")
                continue
            if not isinstance(fields[key], kind) or (kind is list and not all(isinstance(x, str) for x in fields[key])):
                raise UsageError(f"{where}: field {key} = {fields[key]!r} should be {words}")
        out[name] = Preset(name=name, **{**fields, "sae_ids": tuple(fields["sae_ids"]), "arch": dict(fields.get("arch", {}))})
    return out


def builtin_presets() -> dict[str, Preset]:
    text = resources.files("bench.model").joinpath("presets.toml").read_text(encoding="utf-8")
    return _parse(tomllib.loads(text), "presets.toml")


def get_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or the single preset in a user's TOML file."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            presets = _parse(tomllib.loads(path.read_text(encoding="utf-8")), path.name)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"{path}: cannot read preset file ({exc})") from None
        if len(presets) != 1:
            raise UsageError(f"{path}: expected exactly one [preset] table, found {len(presets)}")
        return next(iter(presets.values()))
    presets = builtin_presets()
    if name_or_path not in presets:
        raise UsageError(did_you_mean(name_or_path, presets, "preset"))
    return presets[name_or_path]
