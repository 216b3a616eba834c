"""`tune.space`: what a study searches, checked before any job runs, and sampled from an Optuna trial.

Each entry names a training setting (a `train:` key) or a key of the backbone entry's model_args (`width`, or
`model_args.width`), with a range ({low, high, log, step}) or choices ({choices: [...]}). A range is an integer
where the setting is one (its schema says so; a model_args key: when both bounds are integers), else a float.
Every bound and choice is checked against the setting's own schema, so a trial never trains with a value the
workflow would refuse in a config.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from kagglecv.core.errors import InputError

# Settings that say what a job asks the scheduler for, or where it runs: not part of what a trial learns.
NOT_SEARCHED = ("threads", "mem_mb", "runtime", "gpus", "device", "num_workers")
MODEL_ARGS = "model_args."


@dataclass(frozen=True)
class Param:
    """One searched setting: `name` as tune.space spells it (Optuna's parameter name), `setting` the key it sets
    (in model_args when `in_model_args`)."""

    name: str
    setting: str
    in_model_args: bool
    kind: str  # float | int | choice
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial):
        """This setting's value for an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)


def sample(trial, space: tuple[Param, ...]) -> dict:
    """{name: value} of every searched setting, for `trial`."""
    return {p.name: p.suggest(trial) for p in space}


def place(settings: dict, space: tuple[Param, ...], values: dict) -> dict:
    """`settings` (an entry's, or its overrides) with the searched values in place: model_args keys inside
    model_args, the others at the top."""
    out = dict(settings)
    for p in space:
        if p.name not in values:
            continue
        if p.in_model_args:
            out["model_args"] = {**(out.get("model_args") or {}), p.setting: values[p.name]}
        else:
            out[p.setting] = values[p.name]
    return out


def configured(settings: dict, space: tuple[Param, ...]) -> dict:
    """{name: value} of the entry's own values of the searched settings, those the space holds (a value outside a
    range, or not among the choices, is left to the sampler): the study's baseline trial."""
    out = {}
    for p in space:
        source = (settings.get("model_args") or {}) if p.in_model_args else settings
        if p.setting not in source:
            continue
        v = source[p.setting]
        if p.kind == "choice":
            ok = v in p.choices
        else:
            ok = (
                isinstance(v, (int, float))
                and not isinstance(v, bool)
                and p.low <= v <= p.high
                and (p.kind == "float" or v == int(v))
            )
        if ok:
            out[p.name] = v
    return out


def parse_space(space: dict, entry: dict, train_schema: dict, backbone: str) -> tuple[Param, ...]:
    """The Params of `space` for backbone entry `entry` (its settings, train: merged with its overrides);
    InputError naming the key for anything a trial could not train with."""
    props = train_schema["properties"]
    model_args = entry.get("model_args") or {}
    out = []
    for name, spec in space.items():
        where = f"tune.space.{name}"
        setting, in_args = name, False
        if name.startswith(MODEL_ARGS) or (name not in props and name in model_args):
            setting, in_args = name.removeprefix(MODEL_ARGS), True
            if setting not in model_args:
                raise InputError(
                    f"{where}: {setting!r} is not a key of backbone {backbone!r}'s model_args "
                    f"(its keys: {', '.join(sorted(model_args)) or 'none'})"
                )
        elif name not in props:
            raise InputError(
                f"{where}: {name!r} is not a training setting (a train: key) nor a key of backbone "
                f"{backbone!r}'s model_args; see schemas/config.schema.yaml"
            )
        elif name in NOT_SEARCHED:
            raise InputError(f"{where}: {name!r} says how a job is scheduled, not what it learns: it is not searched")
        elif {"object", "array"} & types(props[name]):
            raise InputError(f"{where}: {name!r} is not a single value (a list or mapping): it is not searched")
        node = None if in_args else props[name]
        if not isinstance(spec, dict) or not spec:
            raise InputError(f"{where}: give {{low, high}} or {{choices: [...]}}, not {spec!r}")
        out.append(
            choices_param(where, name, setting, in_args, spec, node)
            if "choices" in spec
            else range_param(where, name, setting, in_args, spec, node)
        )
    return tuple(out)


def types(node: dict) -> set[str]:
    """The JSON types a schema node accepts (its own, or its anyOf/oneOf branches')."""
    own = node.get("type", [])
    found = {own} if isinstance(own, str) else set(own)
    for sub in node.get("anyOf", []) + node.get("oneOf", []):
        found |= types(sub)
    return found


def check(where: str, value, node: dict | None) -> None:
    """`value` against the setting's schema node (model_args keys have none)."""
    if node is None:
        return
    import jsonschema

    error = next(iter(jsonschema.Draft202012Validator(node).iter_errors(value)), None)
    if error is not None:
        raise InputError(f"{where}: {error.message}")


def choices_param(where, name, setting, in_args, spec, node) -> Param:
    from kagglecv.config.schema import typed

    extra = sorted(k for k, v in spec.items() if k != "choices" and v not in (None, False))  # the defaults: unset
    if extra:
        raise InputError(f"{where}: choices go alone, without {', '.join(extra)}")
    values = []
    for k, v in enumerate(spec["choices"]):
        v = typed(v, node) if node else v  # --config gives text: '0.1' -> 0.1 where the setting is a number
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise InputError(f"{where}.choices.{k}: {v!r} is not a single value (a number, text, true/false or null)")
        check(f"{where}.choices.{k}", v, node)
        values.append(v)
    return Param(name, setting, in_args, "choice", choices=tuple(values))


def number(where: str, value):
    """A bound as a number: numbers as they are; text (--config, or YAML's 1e-4, which PyYAML reads as text) read
    as one."""
    parsed = yaml.safe_load(value) if isinstance(value, str) else value
    if isinstance(parsed, str):
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    if isinstance(parsed, bool) or not isinstance(parsed, (int, float)):
        raise InputError(f"{where}: {value!r} is not a number")
    return parsed


def flag(where: str, value) -> bool:
    value = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(value, bool):
        raise InputError(f"{where}: {value!r} is not true or false")
    return value


def range_param(where, name, setting, in_args, spec, node) -> Param:
    missing = {"low", "high"} - set(spec)
    if missing:
        raise InputError(f"{where}: a range needs {' and '.join(sorted(missing))} (or give choices: [...])")
    low, high = number(f"{where}.low", spec["low"]), number(f"{where}.high", spec["high"])
    log = flag(f"{where}.log", spec.get("log", False))
    step = None if spec.get("step") is None else number(f"{where}.step", spec["step"])
    if node is not None:
        kinds = types(node)
        if not kinds & {"number", "integer"}:
            raise InputError(f"{where}: {name!r} is not a number; search it with choices: [...]")
        integer = "number" not in kinds
    else:
        integer = all(isinstance(v, int) for v in (low, high, step) if v is not None)
    if integer:
        for key, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and v != int(v):
                raise InputError(f"{where}.{key}: {v!r} is not an integer, and {name!r} is one")
        low, high, step = int(low), int(high), None if step is None else int(step)
    else:
        low, high = float(low), float(high)
    if low > high:
        raise InputError(f"{where}: low ({low!r}) is above high ({high!r})")
    if log and low <= 0:
        raise InputError(f"{where}: log: true needs low above 0, not {low!r}")
    if log and step is not None:
        raise InputError(f"{where}: step and log: true do not go together (Optuna samples one or the other)")
    if step is not None and step <= 0:
        raise InputError(f"{where}.step: {step!r} is not above 0")
    check(f"{where}.low", low, node)
    check(f"{where}.high", high, node)
    return Param(name, setting, in_args, "int" if integer else "float", low, high, log, step)
