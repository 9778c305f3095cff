"""Every ``python -m mt_factored...`` command and every override the docs show composes.

The commands and overrides are read from the Markdown files themselves (README.md and the
READMEs of data/, checkpoints/ and docs/), so the docs cannot show a key that the schema
refuses, a recipe that does not exist or a command that is gone. Placeholders (``<task>``,
``...``, ``ORG/NAME``) stand for any value; ``[key=value]`` is an optional argument, taken.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from omegaconf.errors import MissingMandatoryValue

from mt_factored import cli
from mt_factored.artifacts.configs import as_object
from mt_factored.data_commands import COMMANDS as DATA_COMMANDS
from mt_factored.hub_commands import COMMANDS as HUB_COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted(ROOT.glob("*/README.md"))]
DOCS += sorted((ROOT / "docs").glob("*.md"))

CONFIGS = {
    "mt_factored.train": "train",
    "mt_factored.finetune": "finetune",
    "mt_factored.evaluate": "evaluate",
    "mt_factored.fidelity": "fidelity",
    "mt_factored.budget_sweep": "budget_sweep",
    "mt_factored.viz": "viz",
    "mt_factored.partition": "partition",
    "mt_factored.train_expert": "expert_train",
    "mt_factored.expert.train": "expert_train",  # the documented alias
    "mt_factored.plot_expert_curves": "plot_expert_curves",
    "mt_factored.expert.plot_curves": "plot_expert_curves",  # the documented alias
}
"""Module run with ``python -m`` -> its primary config (data and hub: their subcommands')."""
SUBCOMMANDS = {"mt_factored.data": DATA_COMMANDS, "mt_factored.hub": HUB_COMMANDS}
PLACEHOLDER = "X"


def doc_texts() -> dict[str, str]:
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in DOCS if p.is_file()}


def fill_placeholders(text: str) -> str:
    return re.sub(r"<[^<>]*>", PLACEHOLDER, text)


def split_overrides(text: str) -> list[str]:
    """Split at spaces outside quotes, brackets and braces (``{a: [1, 2]}`` stays whole)."""
    tokens, current, depth, quote = [], "", 0, ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
            else:
                current += ch
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
            current += ch
        elif ch in "]}":
            depth -= 1
            current += ch
        elif ch.isspace() and depth == 0:
            if current:
                tokens.append(current)
            current = ""
        else:
            current += ch
    return [*tokens, current] if current else tokens


def choose_option(override: str) -> str:
    """A group option written with a placeholder (``recipe=finetune-<robot>``) -> one that
    exists (``recipe=finetune-quadruped``)."""
    key, _, value = override.partition("=")
    group = key.split("@")[0]  # model@student=<name>: an option of the group model
    if (
        PLACEHOLDER not in value
        or "." in key
        or group not in ("recipe", "distill", "trainer", "logger", "model", "planning")
    ):
        return override
    pattern = re.compile(re.escape(value).replace(PLACEHOLDER, ".+") + "$")
    options = [o for o in cli.group_options(group) if pattern.match(o)]
    assert options, f"no {key} option looks like {value}"
    return f"{key}={options[0]}"


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after ``python -m``) of every command in code blocks and inline code."""
    found: list[tuple[str, list[str]]] = []
    for name, text in doc_texts().items():
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
        lines = [ln for block in blocks for ln in block.replace("\\\n", " ").splitlines()]
        inline = [
            s.replace("\n", " ")
            for s in re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        ]
        for line in lines + inline:
            for part in line.split("&&"):
                match = re.search(r"python -m (mt_factored[\w.]*)(.*)", part)
                if match:
                    argv = split_overrides(fill_placeholders(match.group(2)).split(" #")[0])
                    found.append((f"{name}: {part.strip()[:90]}", [match.group(1), *argv]))
    return found


def overrides_of(args: list[str]) -> list[str]:
    """The overrides a documented argument list stands for."""
    out = []
    for arg in args:
        if arg.startswith("[") and arg.endswith("]") and "=" in arg:
            arg = arg[1:-1]  # an optional argument
        if arg in ("...", "[...]") or not arg:
            continue
        out.append(choose_option(arg))
    return out


def compose_command(argv: list[str]):
    module, args = argv[0], overrides_of(argv[1:])
    wants_help = any(a in cli.HELP_FLAGS for a in args)
    args = [a for a in args if a not in cli.HELP_FLAGS]
    if module in SUBCOMMANDS:
        sub = SUBCOMMANDS[module][args[0]]
        config_name, args = sub.config_name, sub.translate(args[1:])
    else:
        assert module in CONFIGS, f"the docs run {module}, which this test does not know"
        config_name = CONFIGS[module]
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    cfg = cli.compose(config_name, args, hydra_config=True)
    if wants_help:  # the help lists the keys with their documentation
        text = cli.help_text(module, config_name, args, None)
        assert text.startswith(f"usage: python -m {module}") and "# " in text
    try:
        return as_object(cfg)  # resolves every value and runs the dataclasses' checks
    except MissingMandatoryValue:
        return cfg  # the docs leave a required key out (e.g. a command named in prose)


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    modules = {argv[0] for _, argv in COMMANDS}
    assert {"mt_factored.train", "mt_factored.evaluate", "mt_factored.data"} <= modules
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_composes(where: str, argv: list[str]) -> None:
    compose_command(argv)


def documented_overrides() -> list[tuple[str, str]]:
    """(where, overrides) of every inline code span of ``key=value`` outside a command line
    (the overrides of one span are composed together)."""
    found = []
    for name, text in doc_texts().items():
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`([^`]+)`", prose):
            span = span.replace("\n", " ")
            if "python" in span or "pip " in span or "=" not in span or "(" in span:
                continue  # a command, an install line, a name or Python code
            tokens = []
            for token in split_overrides(fill_placeholders(span)):
                key, eq, value = token.partition("=")
                if (
                    eq
                    and value
                    and not value.startswith("=")
                    and re.fullmatch(r"[+~]*[a-z_][\w.@/-]*", key)
                ):
                    tokens.append(token)  # not an env variable or a key named without value
            if tokens:
                found.append((name, " ".join(tokens)))
    return found


OVERRIDES = documented_overrides()


def test_the_docs_show_overrides() -> None:
    shown = {o for _, o in OVERRIDES}
    assert "student.partitions={walker-stand: [[0, 3], [1], [2], [4], [5]]}" in shown
    assert "distill=mse" in shown and "loader.batch_size=256" in shown


@pytest.mark.parametrize("where, override", OVERRIDES, ids=[o for _, o in OVERRIDES])
def test_documented_override_composes(where: str, override: str) -> None:
    """Each span of overrides composes in at least one command (the docs show it in prose)."""
    errors = []
    overrides = [choose_option(o) for o in split_overrides(override)]
    subcommands = [sub.config_name for subs in SUBCOMMANDS.values() for sub in subs.values()]
    for config_name in dict.fromkeys([*CONFIGS.values(), *subcommands]):
        extra = ["name=x"] if config_name in ("train", "finetune") else []
        try:
            cfg = cli.compose(config_name, [*extra, *overrides])
        except Exception as err:  # noqa: BLE001 (hydra and omegaconf errors)
            errors.append(f"{config_name}: {cli.config_error(err)}")
            continue
        assert cfg is not None
        return
    pytest.fail(f"{where}: `{override}` composes in no command:\n" + "\n".join(errors))
