"""The command line of a run configuration, generated from its dataclass.

A run configuration is a dataclass whose fields are options; a field whose type is itself a dataclass (a
technique's config, e.g. `SmartConfig`) contributes its fields as `--<prefix><name>` flags. A field's metadata
may give `help`, `choices`, `flag` (the flag's name when it is not `<prefix><name>`), `aliases`, `group` (the
`--help` section), `type` (a parser for the value), `nargs`, `metavar`, `action`, and the valid range of a
number: `min` / `max` (inclusive), `above` / `below` (exclusive). So the flags, their defaults, their valid
values and the objects the code reads have one source: the dataclasses.

YAML (or JSON) presets become command-line tokens (`config_arguments`), so they are type-checked like flags
and flags given after them win.
"""

import argparse
import copy
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterator
from typing import Any, TypeVar

import yaml

Config = TypeVar("Config")


def option(default: Any = None, help: str | None = None, **metadata: Any) -> Any:
    """A dataclass field that is a command-line option (`metadata`: see the module docstring)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def section(config_class: type, prefix: str, group: str) -> Any:
    """A field holding a technique's config, whose options are `--<prefix><name>` in the `group` section."""
    return dataclasses.field(default_factory=config_class, metadata={"prefix": prefix, "group": group})


def is_section(field: dataclasses.Field) -> bool:
    return isinstance(field.type, type) and dataclasses.is_dataclass(field.type)


def flag_name(field: dataclasses.Field, prefix: str = "") -> str:
    """The option's name without '--' (also its key in flat dicts such as metrics.json's `config`)."""
    return field.metadata.get("flag") or prefix + field.name


def iter_options(config_class: type) -> Iterator[tuple[str, str, dataclasses.Field, str | None]]:
    """(section attribute or '', flag name, field, group) of every option, in declaration order."""
    group = None
    for field in dataclasses.fields(config_class):
        if is_section(field):
            for inner in dataclasses.fields(field.type):
                yield field.name, flag_name(inner, field.metadata["prefix"]), inner, field.metadata["group"]
        else:
            group = field.metadata.get("group", group)
            yield "", flag_name(field), field, group


def _value_type(annotation: Any) -> tuple[Any, bool]:
    """(element type, is a list) of an annotation such as `int`, `float | None` or `list[int]`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(arg for arg in typing.get_args(annotation) if arg is not type(None))
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def build_parser(config_class: type, description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per option of `config_class`, defaults from its fields."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    groups: dict[str | None, Any] = {None: parser}
    for _, flag, field, group in iter_options(config_class):
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        metadata = field.metadata
        default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
        kwargs: dict[str, Any] = {"dest": flag, "default": default, "help": metadata.get("help")}
        value_type, is_list = _value_type(field.type)
        if value_type is bool:
            kwargs["action"] = "store_true"
        elif "action" in metadata:
            kwargs["action"] = metadata["action"]
        else:
            kwargs["type"] = metadata.get("type", value_type)
            if is_list:
                kwargs["nargs"] = metadata.get("nargs", "+")
            for key in ("choices", "metavar"):
                if key in metadata:
                    kwargs[key] = metadata[key]
        groups[group].add_argument(
            f"--{flag}", *(f"--{alias}" for alias in metadata.get("aliases", ())), **kwargs
        )
    return parser


def from_flat(config_class: type[Config], values: dict[str, Any]) -> Config:
    """The config of flat option values (keys: flag names), e.g. a parsed namespace."""
    sections: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for section_name, flag, field, _ in iter_options(config_class):
        if flag in values:
            (sections.setdefault(section_name, {}) if section_name else top)[field.name] = values[flag]
    for field in dataclasses.fields(config_class):
        if is_section(field):
            top[field.name] = field.type(**sections.get(field.name, {}))
    return config_class(**top)


def to_flat(config: Any) -> dict[str, Any]:
    """The flat option values of `config` (keys: flag names), as metrics.json and the model card record
    them."""
    flat = {}
    for section_name, flag, field, _ in iter_options(type(config)):
        owner = getattr(config, section_name) if section_name else config
        flat[flag] = getattr(owner, field.name)
    return flat


def non_default_flags(technique: Any, prefix: str) -> list[str]:
    """The `--flags` of `technique` whose values differ from its defaults, sorted."""
    defaults = type(technique)()
    return sorted(
        f"--{flag_name(field, prefix)}"
        for field in dataclasses.fields(technique)
        if getattr(technique, field.name) != getattr(defaults, field.name)
    )


BOUNDS = {  # metadata key: (test that the value passes, how the message says it)
    "min": (lambda value, bound: value >= bound, ">="),
    "above": (lambda value, bound: value > bound, ">"),
    "max": (lambda value, bound: value <= bound, "<="),
    "below": (lambda value, bound: value < bound, "<"),
}


def check_values(config: Any) -> None:
    """Refuse an option value outside its field's range, and any non-finite number (NaN or inf passes
    comparisons such as `< 0`), naming the flag and the valid range."""
    for section_name, flag, field, _ in iter_options(type(config)):
        value = getattr(getattr(config, section_name) if section_name else config, field.name)
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, bool) or not isinstance(number, int | float):
                continue
            if not math.isfinite(number):
                raise ValueError(f"--{flag} must be a finite number, got {number}.")
            bounds = [(key, field.metadata[key]) for key in BOUNDS if key in field.metadata]
            if not all(BOUNDS[key][0](number, bound) for key, bound in bounds):
                valid = " and ".join(f"{BOUNDS[key][1]} {bound}" for key, bound in bounds)
                raise ValueError(f"--{flag} must be {valid}, got {number}.")


def config_arguments(path: str, parser: argparse.ArgumentParser) -> list[str]:
    """The options of a YAML/JSON config file as command-line tokens, so they are type-checked like flags and
    flags placed after them win."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values.")
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    tokens = []
    for key, value in config.items():
        action = actions.get(key)
        if action is None or key in ("help", "config"):
            raise ValueError(f"{path}: unknown option {key!r}; keys are option names without '--'.")
        flag = action.option_strings[0]
        if action.nargs == 0:  # a switch
            if not isinstance(value, bool):
                raise ValueError(f"{path}: {key} is a switch; give true or false, not {value!r}.")
            tokens += [flag] if value else []
        elif isinstance(value, list):  # an option of several values, e.g. d_adam_betas: [0.0, 0.9]
            tokens += [flag, *map(str, value)]
        elif value is not None:
            tokens += [flag, str(value)]
    return tokens


def parse(
    config_class: type[Config],
    argv: list[str] | None = None,
    description: str | None = None,
    replaces: dict[str, tuple[str, ...]] | None = None,
) -> Config:
    """`config_class` from the command line, after the `--config` files it names (when the class has a
    `config` option). `replaces`: an option given on the command line resets these options of the files to
    their defaults (e.g. --train_data_dir replaces a preset's dataset_name), unless they are given too."""
    parser = build_parser(config_class, description)
    argv = sys.argv[1:] if argv is None else list(argv)
    tokens = argv
    if "config" in {field.name for field in dataclasses.fields(config_class)}:
        config_parser = argparse.ArgumentParser(add_help=False)
        config_parser.add_argument("--config", action="append", default=[])
        config_paths = config_parser.parse_known_args(argv)[0].config
        tokens = [token for path in config_paths for token in config_arguments(path, parser)] + argv
    values = vars(parser.parse_args(tokens))
    if replaces:
        given = given_options(parser, argv)
        defaults = {action.dest: action.default for action in parser._actions}
        for option_name, replaced in replaces.items():
            if option_name in given:
                values.update({name: defaults[name] for name in replaced if name not in given})
    return from_flat(config_class, values)


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The options (dests) that `argv` itself sets, whatever their values."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_args(argv)))
