"""Griffe extension: render Sphinx cross-reference roles in docstrings as links.

bayesperf's numpydoc docstrings cross-reference with Sphinx roles
(``:class:`~bayesperf.models.LatencyModel```, ``:meth:`fit```), which Markdown would
show verbatim. This extension, loaded by mkdocstrings (``mkdocs.yml``), rewrites each
role into an *optional* autorefs link: a link where the target is documented on the
site, plain code otherwise (no warning), so the strict build stays quiet about targets
outside the API page (``pymc.sample``, private helpers).

Relative targets (``fit``, ``LatencySummary.from_histogram``) are resolved like Sphinx
does: against the documented object, then its parents, then the names its module
imports. ``~`` shows the last component only; ``:func:`` and ``:meth:`` add ``()``.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|const):`(?P<body>[^`]+)`"
)
EXPLICIT = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)


def _lookup(collection: Any, path: str) -> Any | None:
    """The object at a dotted ``path`` in the loaded modules, or ``None``."""
    try:
        return collection[path]
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _canonical(found: Any, fallback: str) -> str:
    try:
        return found.canonical_path
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return fallback


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """Canonical path of ``target`` as seen from ``obj``'s docstring, or ``None``."""
    collection = obj.modules_collection
    found = _lookup(collection, target)
    if found is not None:
        return _canonical(found, target)
    scope: Any = obj
    while scope is not None:
        found = _lookup(collection, f"{scope.path}.{target}")
        if found is not None:
            return _canonical(found, f"{scope.path}.{target}")
        scope = scope.parent
    # ``bayesperf.loo`` and the models are exported lazily (a module ``__getattr__``
    # that static analysis cannot see): look for the name in the package's subpackages.
    package, _, name = target.partition(".")
    root = _lookup(collection, package)
    if root is not None and name and "." not in name:
        for sub in root.modules.values():
            found = _lookup(collection, f"{sub.path}.{name}")
            if found is not None:
                return _canonical(found, f"{sub.path}.{name}")
    return None


def rewrite(obj: griffe.Object, text: str) -> str:
    """``text`` with every Sphinx role replaced by an optional autorefs link."""

    def link(match: re.Match[str]) -> str:
        role, body = match["role"], " ".join(match["body"].split())
        explicit = EXPLICIT.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"].lstrip("~!")
        else:
            target = body.lstrip("~!")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
            if role in ("func", "meth"):
                title += "()"
        identifier = _resolve(obj, target)
        if identifier is None and "." in target:
            identifier = target  # external or undocumented: linked only if documented
        code = f"<code>{html.escape(title)}</code>"
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring once the package is loaded."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite the roles in ``obj``'s docstring."""
        if obj.docstring is not None and ":`" in obj.docstring.value:
            obj.docstring.value = rewrite(obj, obj.docstring.value)
