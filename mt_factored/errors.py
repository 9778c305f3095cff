"""The project's own errors: bad input, something missing, things that do not fit together.

Each says what is wrong (``what``) and, where the message alone does not, what to do
(``fix``). The command-line runner (:mod:`mt_factored.cli`) prints any of them as one line,
``error: <what> — <what to do>``, and exits with status 2; ``HYDRA_FULL_ERROR=1`` shows the
traceback instead. They subclass the builtin exception a caller would expect
(``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class MtFactoredError(Exception):
    """Base class of the project's errors.

    Args:
        what: what is wrong (the message; may already say what to do).
        fix: what to do about it, when ``what`` does not say it.
    """

    default_fix = ""
    """What to do when the raiser gave no ``fix``: the category's usual remedy."""

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what
        self.fix = fix
        super().__init__(f"{what} — {fix}" if fix else what)

    def one_line(self) -> str:
        """``<what> — <what to do>`` on one line (the runner's error format)."""
        what = _unwrap_worker(self.what)
        what = " ".join(line.strip() for line in what.splitlines() if line.strip())
        fix = self.fix or self.default_fix
        return f"{what} — {fix}" if fix and fix not in what else what

    def __reduce__(self):  # picklable with both arguments (DataLoader workers, DDP)
        return type(self), (self.what, self.fix)


def _unwrap_worker(text: str) -> str:
    """The original message of an error re-raised from a DataLoader worker (torch wraps it in
    "Caught X in DataLoader worker process N. Original Traceback ...: Name: <message>")."""
    if "Original Traceback" not in text:
        return text
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    name, sep, message = last.partition(": ")
    return message if sep and name.replace(".", "").replace("_", "").isalnum() else last


class InputError(MtFactoredError, ValueError):
    """A value the user gave (a config key's value, a spec, a name) that cannot be used."""

    default_fix = "`python -m <command> --help` lists every key, its default and what it means"


class MissingError(MtFactoredError, FileNotFoundError):
    """A file, folder, model or dataset that is not where the input says."""

    default_fix = "check the path (relative paths are read from the working directory)"


class MismatchError(MtFactoredError, ValueError):
    """Inputs that exist but do not fit: weights vs config, a file's format or version, a
    resumed run vs the command that resumes it."""


class NonFiniteError(MtFactoredError, ArithmeticError):
    """A NaN or infinity where numbers must be finite: a loss, a model's weights, data read for
    training. Nothing non-finite is written or published."""

    default_fix = (
        "check the data named (`python -m mt_factored.data verify <folder>`) and the learning "
        "rate; resume from the last checkpoint once fixed"
    )


class WriteError(MtFactoredError, OSError):
    """A file the project must write cannot be written (disk full, read-only folder); what was
    there before is left intact."""

    default_fix = "free space or make the folder writable (or choose another run_dir=)"
