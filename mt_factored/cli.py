"""The command-line runner every entry point shares: one grammar, one ``--help``, one error format.

- Grammar: Hydra's ``key=value`` overrides (``python -m mt_factored.train recipe=quickstart
  loader.batch_size=256 distill=mse``); ``data`` and ``hub`` keep their subcommands
  (``python -m mt_factored.hub push checkpoint=... repo_id=...``).
- ``--help``: the composed config (the defaults, with the overrides given) with every key's
  documentation, read from the config dataclasses, and the config groups' options.
- Errors: a config that does not compose (an unknown key, a value of the wrong type, a
  missing option) and every error of the project (:class:`mt_factored.errors.MtFactoredError`:
  bad input, a missing file, things that do not fit) print ONE line, ``error: <what> — <what
  to do>``, and exit with status 2. ``HYDRA_FULL_ERROR=1`` shows the traceback instead.

The configs are composed from the package's recipes (``pkg://mt_factored.recipes``) whatever
the working directory.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Any

import hydra
import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mt_factored import schema
from mt_factored.errors import MtFactoredError

FULL_ERROR = "HYDRA_FULL_ERROR"
"""Set to 1 to see tracebacks instead of the one-line errors."""
HELP_FLAGS = ("--help", "-h")
EXIT_ERROR = 2
CONFIG_MODULE = "mt_factored.recipes"
"""Where Hydra reads the recipes: the package's own (``pkg://``, also in a wheel install)."""


# ----------------------------------------------------------------------------- compose
def compose(
    config_name: str, overrides: Sequence[str] = (), hydra_config: bool = False
) -> DictConfig:
    """The composed config of ``config_name`` with ``overrides`` (what a command would run
    with); ``hydra_config`` keeps the ``hydra`` node (and resolves ``${hydra:...}``)."""
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = hydra_compose(
            config_name, overrides=list(overrides), return_hydra_config=hydra_config
        )
        if hydra_config:
            HydraConfig.instance().set_config(cfg)
        return cfg


def group_options(group: str) -> list[str]:
    """The options of a config group (e.g. the recipes)."""
    schema.register()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        return sorted(loader.get_group_options(group))


# ------------------------------------------------------------------------------ errors
def fail(what: str, fix: str = "") -> None:
    """Print ``error: <what> — <fix>`` on one line and exit with status 2."""
    line = " ".join(what.split())
    print(f"error: {line} — {fix}" if fix else f"error: {line}", file=sys.stderr)
    sys.exit(EXIT_ERROR)


def project_error(err: BaseException) -> MtFactoredError | None:
    """The project's error behind ``err`` (itself, or the cause of a resolver failure)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, MtFactoredError):
            return err
        err = err.__cause__ or err.__context__
        seen += 1
    return None


def _hydra_text(text: str) -> str:
    """A Hydra message on one line: no search path, option lists joined, no '+key' advice
    (a schema refuses unknown keys anyway)."""
    text = text.split("Config search path:")[0]
    out: list[str] = []
    for line in (ln.strip() for ln in text.splitlines()):
        if not line or line.startswith(("To append", "full_key", "object_type", "reference_type")):
            continue
        if out and out[-1].endswith(":") and "options in" in out[-1]:
            out[-1] += f" {line}"
        elif out and "options in" in out[-1] and ":" in out[-1]:
            out[-1] += f", {line}"
        else:
            out.append(line)
    return "; ".join(s.rstrip(".") for s in out)


def config_error(err: BaseException) -> str:
    """One line for an error of Hydra / OmegaConf composition, naming the key."""
    parts: list[str] = []
    node: BaseException | None = err
    while node is not None and len(parts) < 4:
        if isinstance(node, OmegaConfBaseException):
            message = _hydra_text(getattr(node, "msg", None) or str(node))
            key = getattr(node, "full_key", None)
            parts.append(message + (f" (key {key})" if key and key not in message else ""))
            break  # the first OmegaConf error names the key and the problem
        parts.append(_hydra_text(str(node)))
        node = node.__cause__ or node.__context__
    text = ": ".join(dict.fromkeys(p for p in parts if p))
    return text or type(err).__name__


def require_writable(cfg: DictConfig, key: str = "run_dir") -> None:
    """Create the command's ``run_dir`` now, or fail with one line: Hydra writes its record
    there before the command runs and would end a read-only or full folder in a traceback."""
    try:
        folder = cfg.get(key) if key in cfg else None
    except OmegaConfBaseException:  # e.g. ${hydra:...} in it: Hydra resolves it later
        return
    if not folder or _full_error():
        return
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(13, "Permission denied", folder)
    except OSError as err:
        fail(
            f"{key}={folder} cannot be written ({err.strerror or err})",
            f"make it writable, free space, or use another {key}=",
        )


def _full_error() -> bool:
    return os.environ.get(FULL_ERROR) == "1"


# --------------------------------------------------------------------------------- run
def main(
    command: str,
    config_name: str,
    run: Callable[[Any], Any],
    *,
    doc: str | None = None,
    argv: Sequence[str] | None = None,
) -> int:
    """Run ``run(cfg)`` as ``python -m <command> [key=value ...]`` through ``hydra.main``.

    Returns:
        The exit status: 0, or 2 after an error line (``sys.exit(main(...))``).

    Args:
        command: the module run with ``python -m`` (for help and error lines).
        config_name: the primary config (``mt_factored/recipes/<config_name>.yaml``).
        run: the command's work, given the composed config.
        doc: the command's description for ``--help`` (its module docstring).
        argv: the arguments (default ``sys.argv[1:]``).
    """
    try:
        _main(command, config_name, run, doc, list(sys.argv[1:] if argv is None else argv))
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else EXIT_ERROR
    return 0


def _main(
    command: str, config_name: str, run: Callable[[Any], Any], doc: str | None, args: list[str]
) -> None:
    hint = f"`python -m {command} --help` lists every key, its default and what it means"
    overrides = [a for a in args if a not in HELP_FLAGS]
    hydra_flags = [a for a in overrides if a.startswith("-")]
    if any(a in HELP_FLAGS for a in args):
        try:
            text = help_text(command, config_name, overrides, doc)
        except Exception as err:  # noqa: BLE001 (any composition error becomes one line)
            if _full_error():
                raise
            fail(config_error(err), hint)
        try:
            print(text, flush=True)
        except BrokenPipeError:  # `--help | head`: the reader left; as the Python docs advise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    if not hydra_flags:  # Hydra's own flags (--cfg job, --multirun, ...) go to Hydra as given
        try:
            composed = compose(config_name, overrides)
        except Exception as err:  # noqa: BLE001 (hydra and omegaconf errors have no common base)
            if _full_error():
                raise
            fail(config_error(err), hint)
        require_writable(composed)

    def task(cfg: DictConfig) -> Any:
        try:
            return run(cfg)
        except Exception as err:
            if _full_error():
                raise
            found = project_error(err)
            if found is not None:
                fail(found.one_line().replace("<command>", command))
            if isinstance(err, OmegaConfBaseException):  # e.g. a mandatory key left unset
                fail(config_error(err), hint)
            raise

    schema.register()
    argv0, sys.argv = sys.argv, [sys.argv[0], *args]
    try:
        hydra.main(
            version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name
        )(task)()
    finally:
        sys.argv = argv0


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand of ``python -m mt_factored.data`` / ``mt_factored.hub``."""

    config_name: str
    """Its primary config (``mt_factored/recipes/<config_name>.yaml``: no run folder, no log file)."""
    run: Callable[[Any], Any]
    doc: str
    positional: str | None = None
    """A bare argument (no ``=``) stands for ``<positional>=<argument>``."""
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``--flag`` -> the override it stands for (e.g. ``--dry-run`` -> ``dry_run=true``)."""

    def translate(self, args: Sequence[str]) -> list[str]:
        """The Hydra overrides that ``args`` (flags, a bare positional) stand for."""
        out = []
        for arg in args:
            if arg in self.flags:
                out.append(self.flags[arg])
            elif self.positional and "=" not in arg and not arg.startswith("-"):
                out.append(f"{self.positional}={arg}")
            else:
                out.append(arg)
        return out


def main_with_subcommands(
    command: str, subcommands: Mapping[str, Subcommand], argv: Sequence[str] | None = None
) -> int:
    """``python -m <command> <subcommand> [key=value ...]`` (see :func:`main`); returns the
    exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    names = ", ".join(subcommands)
    if not args or args[0] in HELP_FLAGS:
        print(f"usage: python -m {command} {{{names}}} [key=value ...] [--help]\n")
        for name, sub in subcommands.items():
            print(f"  {name}: {first_paragraph(sub.doc)}")
        return EXIT_ERROR if not args else 0
    name, rest = args[0], args[1:]
    if name not in subcommands:
        print(
            f"error: unknown command {name!r} of python -m {command} — use one of: {names}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    sub = subcommands[name]
    translated = sub.translate(rest)
    # These commands keep Hydra's logging off: records go to stderr as from a plain script
    # (a no-op where logging is set up already, e.g. under pytest).
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return main(f"{command} {name}", sub.config_name, sub.run, doc=sub.doc, argv=translated)


# -------------------------------------------------------------------------------- help
def first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "")
    return " ".join(text.split("\n\n")[0].split())


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its docstring (the string literal under the field), bases included."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        source_cls = getattr(klass, "docs_from", klass)
        if not dataclasses.is_dataclass(source_cls):
            continue
        if source_cls is not klass:
            docs.update(field_docs(source_cls))
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _comment(text: str, indent: str) -> list[str]:
    return [
        f"{indent}# {line}"
        for para in text.split("\n\n")
        for line in textwrap.wrap(" ".join(para.split()), 96 - len(indent))
    ]


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.name
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return dumped.removesuffix("\n...").removesuffix("...").strip()


def render(node: DictConfig, indent: str = "", skip: Sequence[str] = ()) -> list[str]:
    """YAML of ``node`` with each key's documentation above it (interpolations unresolved)."""
    cls = OmegaConf.get_type(node)
    docs = field_docs(cls) if dataclasses.is_dataclass(cls) else {}
    lines: list[str] = []
    raw = OmegaConf.to_container(node, resolve=False)
    for key in node.keys():
        if key in skip:
            continue
        child = node._get_node(key)
        doc = docs.get(str(key))
        child_cls = OmegaConf.get_type(child) if isinstance(child, DictConfig) else None
        if doc is None and child_cls is not None and dataclasses.is_dataclass(child_cls):
            doc = first_paragraph(child_cls.__doc__)
        if doc:
            lines += _comment(doc, indent)
        nested = (
            isinstance(child, DictConfig)
            and not child._is_none()
            and not child._is_missing()
            and not child._is_interpolation()
            and dataclasses.is_dataclass(child_cls)
        )
        if nested:
            lines.append(f"{indent}{key}:")
            lines += render(child, indent + "  ")
        else:
            lines.append(f"{indent}{key}: {_scalar(raw[key])}")
    return lines


def help_text(command: str, config_name: str, overrides: Sequence[str], doc: str | None) -> str:
    """The text of ``--help``: usage, description, config groups, the documented config."""
    cfg = compose(config_name, overrides, hydra_config=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices, resolve=True)
    with_groups = [
        f"  {group}: {chosen}  (options: {', '.join(group_options(group.split('@')[0]))})"
        for group, chosen in choices.items()
        if not group.startswith("hydra/")
    ]
    lines = [
        f"usage: python -m {command} [key=value ...] [--help]",
        "",
        first_paragraph(doc),
        "",
        "Overrides use Hydra's grammar: key=value, nested.key=value, list=[a,b], "
        "group=option. Errors print one line (exit status 2); HYDRA_FULL_ERROR=1 shows the "
        "traceback.",
    ]
    if with_groups:
        lines += ["", "Config groups (group=option):", *with_groups]
    lines += ["", "Config (its defaults with the overrides given; # what each key means):", ""]
    lines += render(cfg, skip=("hydra",))
    return "\n".join(lines)
