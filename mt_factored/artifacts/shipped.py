"""Files that come with the project, found whatever the working directory.

Recipes name them through two OmegaConf resolvers (:func:`register_resolvers`):

- ``${package_asset:smoke/cartpole-balance.pt}``: a file installed with the package
  (``mt_factored/assets``, a few hundred KB: the smoke recipe's tiny expert and data);
- ``${asset:checkpoints/quickstart/cartpole-balance.pt}``: a file of the repository checkout
  (the quickstart's experts and data, ``data/`` and ``checkpoints/``, 1-3.5 MB each), found
  beside the package when it runs from a clone (an editable install), else in the working
  directory when that is a clone. A wheel install has no checkout: the error says how to get
  one.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from mt_factored.constants import PACKAGE_ASSETS_DIR, REPO_ROOT
from mt_factored.errors import MissingError


class MissingAssetError(MissingError):
    """A shipped file that this installation does not have."""


def is_checkout(folder: Path) -> bool:
    """Whether ``folder`` is a checkout of this repository (its pyproject names the project)."""
    pyproject = folder / "pyproject.toml"
    try:
        return (folder / "mt_factored").is_dir() and 'name = "mt_factored"' in pyproject.read_text()
    except OSError:
        return False


def checkout_asset(relative: str) -> str:
    """The absolute path of ``relative`` in the repository checkout (see the module docstring).

    Raises:
        MissingAssetError: no checkout holds it (a wheel install, or a file removed).
    """
    for root in dict.fromkeys((REPO_ROOT, Path.cwd().resolve())):
        if is_checkout(root) and (root / relative).exists():
            return str(root / relative)
    raise MissingAssetError(
        f"{relative} is not here: the quickstart's experts and data ship with the repository, "
        "not with the installed package",
        "clone the mt_factored repository, install it from there (pip install -e .) and run "
        "in the clone, or point expert=... and data=... at files of your own",
    )


def package_asset(relative: str) -> str:
    """The absolute path of ``relative`` in the package's ``assets`` folder.

    Raises:
        MissingAssetError: the installation lacks it (reinstall the package).
    """
    path = PACKAGE_ASSETS_DIR / relative
    if not path.exists():
        raise MissingAssetError(
            f"{relative} is missing from {PACKAGE_ASSETS_DIR}",
            "reinstall mt_factored (pip install --force-reinstall mt_factored)",
        )
    return str(path)


def register_resolvers() -> None:
    """Make ``${asset:...}`` and ``${package_asset:...}`` available to every config."""
    OmegaConf.register_new_resolver("asset", checkout_asset, replace=True)
    OmegaConf.register_new_resolver("package_asset", package_asset, replace=True)
