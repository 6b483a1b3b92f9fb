"""The API reference documents the public surface whole: an MkDocs hook and a Griffe extension
(both named in mkdocs.yml).

mkdocstrings renders each `::: flames.NAME` of docs/reference.md and fails the build when a name
does not resolve. Before that, this hook fails the build when:

- the reference's names differ from `flames.__all__` (a public name left out, or one that is
  not public);
- a public name does not resolve at run time (the lazy `flames.__getattr__`);
- an annotation of a public function, class, method or property cannot be evaluated, with the
  `if TYPE_CHECKING:` imports of its module run first (what type checkers and readers see).

The Griffe extension (`AsyncTwins`) shows each `NAME_async = async_twin(NAME, DOC)` of the
source as what it is at run time: an async function with NAME's parameters and DOC.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import griffe
from mkdocs.exceptions import PluginError

REFERENCE = "reference.md"
DIRECTIVE = re.compile(r"^:::\s*flames\.(\w+)\s*$", re.MULTILINE)


def on_config(config: Any) -> Any:
    import flames

    docs = Path(config["docs_dir"])
    problems = []
    for page in sorted(docs.glob("reference*.md")):  # reference.md and its translations
        listed = DIRECTIVE.findall(page.read_text("utf-8"))
        public = [name for name in flames.__all__ if not name.startswith("__")]
        missing = sorted(set(public) - set(listed))
        extra = sorted(set(listed) - set(public))
        twice = sorted({name for name in listed if listed.count(name) > 1})
        for label, names in (("leaves out", missing), ("is not public", extra), ("twice", twice)):
            if names:
                problems.append(f"{page.name}: {label}: {', '.join(names)}")
    for name in flames.__all__:
        try:
            value = getattr(flames, name)
        except Exception as exc:  # the build must say which name, whatever went wrong
            problems.append(f"flames.{name} does not resolve: {exc}")
            continue
        problems += annotation_problems(f"flames.{name}", value)
    if problems:
        raise PluginError("API reference: " + "; ".join(problems))
    return config


def annotation_problems(label: str, value: Any) -> list[str]:
    targets: list[tuple[str, Any]] = []
    if inspect.isclass(value):
        targets.append((label, value))
        for attribute, member in vars(value).items():
            if attribute.startswith("_"):
                continue
            if isinstance(member, property):
                member = member.fget
            elif isinstance(member, (classmethod, staticmethod)):
                member = member.__func__
            if inspect.isfunction(member):
                targets.append((f"{label}.{attribute}", member))
    elif callable(value):
        targets.append((label, value))
    problems = []
    for where, target in targets:
        try:
            evaluate_annotations(target)
        except Exception as exc:
            problems.append(f"{where}: an annotation cannot be evaluated: {exc!r}")
    return problems


def evaluate_annotations(target: Any) -> None:
    """Evaluate a class's attribute annotations, or a function's signature as `inspect` gives it
    (an async twin declares its twin's, already evaluated, as `__signature__`): in its module,
    then, for a name it does not hold, with the module's TYPE_CHECKING imports too."""
    module = sys.modules.get(target.__module__)
    try:
        evaluate_in(target, dict(vars(module)) if module else {})
    except NameError:
        evaluate_in(target, type_checking_namespace(module))


def evaluate_in(target: Any, namespace: dict[str, Any]) -> None:
    if inspect.isclass(target):
        typing.get_type_hints(target, globalns=namespace)
        return
    signature = inspect.signature(target)
    annotations = [p.annotation for p in signature.parameters.values()]
    for annotation in [*annotations, signature.return_annotation]:
        if isinstance(annotation, str):
            typing.get_type_hints(_Annotated(annotation), globalns=namespace)


class _Annotated:
    """An object whose one annotation is the given string, for typing.get_type_hints."""

    def __init__(self, annotation: str) -> None:
        self.__annotations__ = {"value": annotation}


def type_checking_namespace(module: Any) -> dict[str, Any]:
    """The module's globals with its `if TYPE_CHECKING:` imports run."""
    namespace = dict(vars(module)) if module else {}
    source = inspect.getsource(module) if module else ""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for statement in node.body:
                if isinstance(statement, ast.Import | ast.ImportFrom):
                    run_import(statement, namespace)
    return namespace


def run_import(statement: ast.Import | ast.ImportFrom, namespace: dict[str, Any]) -> None:
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            module = importlib.import_module(alias.name)
            namespace[alias.asname or alias.name.split(".")[0]] = (
                module if alias.asname else importlib.import_module(alias.name.split(".")[0])
            )
        return
    module = importlib.import_module(statement.module or "")
    for alias in statement.names:
        namespace[alias.asname or alias.name] = getattr(module, alias.name)


class AsyncTwins(griffe.Extension):
    """`evaluate_async = async_twin(evaluate, "doc")` becomes `async def evaluate_async` with
    evaluate's parameters and the doc (griffe reads the source, where it is an assignment)."""

    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        for name, member in list(mod.members.items()):
            if member.is_alias or not member.is_attribute:
                continue
            call = member.value
            if not (isinstance(call, griffe.ExprCall) and str(call.function) == "async_twin"):
                continue
            function, doc = call.arguments[:2]
            twin_of = mod.members.get(str(function))
            if twin_of is None or not twin_of.is_function:
                raise PluginError(f"{mod.path}.{name}: async_twin of unknown {function}")
            twin = griffe.Function(
                name,
                lineno=member.lineno,
                endlineno=member.endlineno,
                parameters=twin_of.parameters,
                returns=twin_of.returns,
                docstring=griffe.Docstring(ast.literal_eval(str(doc)), lineno=member.lineno),
            )
            twin.labels.add("async")
            mod.set_member(name, twin)
