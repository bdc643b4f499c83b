"""Load, validate and compile mapping files (`mappings/<name>.yaml`) once.

`check_mappings` collects every problem of every file (for `bridge check`); `load_mappings` raises the first.
Each problem is a MappingError with file:line:column and a hint; for a problem inside an expression the column
points at the offending part of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import IncompleteExpressionError, JMESPathError, LexerError, ParseError

from bridge import yamlsrc
from bridge.errors import MappingError
from bridge.events import CANONICAL_NAMES, FIELDS, FieldValueError, coerce, is_known_field, is_valid_name
from bridge.mapping import analysis, fast, generate
from bridge.mapping.evaluate import CompiledMapping, FieldPlan, MappingSet, Rule, coercer

FILE_KEYS = ("provider", "description", "defaults", "events")
RULE_KEYS = ("name", "when", "fields", "description", "ordering_key", "sequence")
#: the rule keys that are expressions beside the fields, and the kind each gives: the key that orders the event's
#: deliveries (destinations with `ordering: by_key`) and the provider's sequence number for it
ORDERING_KEYS = {"ordering_key": "string", "sequence": "int"}
REQUIRED_FIELDS = ("id", "occurred_at")
SYNTAX_HINT = "check the JMESPath syntax at this column: text constants are 'quoted', JSON constants `backticked`"
_ORDER = {path: index for index, path in enumerate(FIELDS)}
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Mark = tuple[int, int]


def load_mappings(directory: Path) -> MappingSet:
    """Compile every `*.yaml` in `directory`; raise the first MappingError if any file is invalid."""
    mappings, errors = _compile_directory(directory)
    if errors:
        raise errors[0]
    return _mapping_set(mappings)


def check_mappings(directory: Path) -> list[MappingError]:
    """Every problem of every mapping file in `directory` (empty when all are valid)."""
    return _compile_directory(directory)[1]


def produced_names(directory: Path) -> frozenset[str]:
    """Every canonical event name a rule of a mapping file in `directory` emits (its `name:`), read without
    compiling; files that do not read are skipped (check_mappings reports them)."""
    names: set[str] = set()
    for path in sorted(directory.glob("*.yaml")):
        try:
            document = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        events = document.get("events") if isinstance(document, dict) else None
        for rules in events.values() if isinstance(events, dict) else ():
            for rule in rules if isinstance(rules, list) else [rules]:
                name = rule.get("name") if isinstance(rule, dict) else None
                if isinstance(name, str):
                    names.add(name)
    return frozenset(names)


def compile_file(path: Path, name: str | None = None) -> tuple[CompiledMapping | None, list[MappingError]]:
    """One mapping file: the compiled mapping (None if it has errors) and its problems."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [MappingError(f"cannot read the file: {exc.strerror}", file=str(path))]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, [MappingError("the file is not UTF-8 text", file=str(path))]
    try:
        document = yamlsrc.load(text, str(path), MappingError)
    except MappingError as exc:
        return None, [exc]
    compiler = _FileCompiler(path, text)
    mapping = compiler.compile(document, name or path.stem, hashlib.sha256(data).hexdigest())
    unique = {error.describe(): error for error in compiler.errors}  # a YAML alias repeats its node's problems
    errors = sorted(unique.values(), key=lambda e: (e.line or 0, e.column or 0))
    return (None if errors else mapping), errors


def _compile_directory(directory: Path) -> tuple[dict[str, CompiledMapping], list[MappingError]]:
    if not directory.is_dir():
        hint = "set `mappings:` in bridge.yaml to the directory holding <name>.yaml files"
        return {}, [MappingError("mappings directory not found", file=str(directory), hint=hint)]
    mappings: dict[str, CompiledMapping] = {}
    errors: list[MappingError] = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".yml":
            errors.append(
                MappingError("mapping files end in .yaml", file=str(path), hint=f"rename it to {path.stem}.yaml")
            )
            continue
        if path.suffix != ".yaml":
            continue
        mapping, problems = compile_file(path)
        errors.extend(problems)
        if mapping is not None:
            mappings[mapping.name] = mapping
    return mappings, errors


def _mapping_set(mappings: dict[str, CompiledMapping]) -> MappingSet:
    digest = hashlib.sha256()
    for name in sorted(mappings):
        digest.update(f"{name}\0{mappings[name].content_hash}\n".encode())
    return MappingSet(mappings, digest.hexdigest())


class _FileCompiler:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.file = str(path)
        self.lines = text.splitlines()
        self.errors: list[MappingError] = []
        self.uses_headers = False
        self.uses_received_at = False
        self.broken: set[str] = set()  # fields of the current rule (or defaults) whose expression has errors
        self.broken_defaults: set[str] = set()

    def error(self, message: str, mark: Mark | None = None, hint: str | None = None) -> None:
        line, column = mark if mark else (None, None)
        self.errors.append(MappingError(message, file=self.file, line=line, column=column, hint=hint))

    def unknown_keys(self, node: yamlsrc.YamlMap, allowed: tuple[str, ...], where: str) -> None:
        for key in node:
            if key not in allowed:
                guess = analysis.closest(key, allowed)
                hint = f"did you mean {guess!r}?" if guess else f"allowed keys: {', '.join(allowed)}"
                self.error(f"unknown key {key!r} {where}", node.key_mark(key), hint)

    # -- the file --------------------------------------------------------------------------------------

    def compile(self, document: Any, name: str, content_hash: str) -> CompiledMapping | None:
        if not isinstance(document, yamlsrc.YamlMap):
            start = getattr(document, "start", (1, 1))
            self.error(
                "a mapping file must be a YAML mapping with `provider` and `events`",
                start,
                "start from mappings/stripe.yaml or docs/mappings.md",
            )
            return None
        self.unknown_keys(document, FILE_KEYS, "at the top of the file")
        provider = document.get("provider")
        if "provider" in document and not isinstance(provider, str):
            self.error("`provider` must be text (the provider type, e.g. stripe)", document.value_mark("provider"))
        defaults: dict[str, FieldPlan | None] = {}
        if "defaults" in document:
            defaults = self.fields(document["defaults"], document.value_mark("defaults"), "defaults")
            self.broken_defaults = set(self.broken)
        rules: dict[str, tuple[Rule, ...]] = {}
        events = document.get("events")
        if "events" not in document:
            self.error("the file has no `events`", document.start, "add events: {<provider event type>: [rules]}")
        elif not isinstance(events, yamlsrc.YamlMap) or not events:
            self.error(
                "`events` must be a mapping of provider event type -> rules",
                document.value_mark("events"),
                "e.g. events: {checkout.session.completed: [{name: purchase, fields: {...}}]}",
            )
        else:
            for event_type, value in events.items():
                compiled = self.event(event_type, value, events.value_mark(event_type), defaults)
                if compiled:
                    rules[event_type] = compiled
        return CompiledMapping(
            name=name,
            path=self.path,
            content_hash=content_hash,
            provider=provider if isinstance(provider, str) else None,
            rules=rules,
            uses_headers=self.uses_headers,
            uses_received_at=self.uses_received_at,
        )

    def event(self, event_type: str, value: Any, mark: Mark, defaults: dict[str, FieldPlan | None]) -> tuple[Rule, ...]:
        if isinstance(value, yamlsrc.YamlMap):
            entries: list[tuple[Any, Mark]] = [(value, value.start)]
        elif isinstance(value, yamlsrc.YamlList) and value:
            entries = [(item, value.item_mark(i)) for i, item in enumerate(value)]
        else:
            self.error(
                f"{event_type}: expected a rule or a list of rules",
                mark,
                "remove the event type to ignore it; otherwise give [{name: ..., fields: {...}}]",
            )
            return ()
        rules = []
        for index, (entry, entry_mark) in enumerate(entries, start=1):
            rule = self.rule(event_type, index, entry, entry_mark, defaults)
            if rule is not None:
                rules.append(rule)
        return tuple(rules)

    def rule(
        self, event_type: str, index: int, node: Any, mark: Mark, defaults: dict[str, FieldPlan | None]
    ) -> Rule | None:
        if not isinstance(node, yamlsrc.YamlMap):
            self.error(f"{event_type}: a rule must be a mapping with name and fields", mark)
            return None
        self.unknown_keys(node, RULE_KEYS, "in a rule")
        name = node.get("name")
        if "name" not in node:
            self.error(
                f"{event_type}: rule {index} has no name",
                node.start,
                f"add name: <canonical name>, one of {', '.join(CANONICAL_NAMES)} or a lower_snake name",
            )
        elif not isinstance(name, str) or not is_valid_name(name):
            guess = analysis.closest(str(name).lower(), CANONICAL_NAMES)
            hint = f"did you mean {guess!r}?" if guess else "use a canonical name or a lower_snake custom name"
            self.error(f"unknown event name {name!r}", node.value_mark("name"), hint)
        when, when_text, when_node = None, None, None
        if "when" in node:
            when, when_text, when_node = self.condition(node["when"], node.value_mark("when"))
        fields: dict[str, FieldPlan | None] = {}
        self.broken = set(self.broken_defaults)
        if "fields" in node:
            fields = self.fields(node["fields"], node.value_mark("fields"), f"{event_type} rule {index}")
        merged = {**defaults, **fields}
        label = f"rule {index} ({name})" if isinstance(name, str) else f"rule {index}"
        for required in REQUIRED_FIELDS:
            if (required not in merged or merged[required] is None) and required not in self.broken:
                self.error(
                    f"{event_type} {label} sets no {required}",
                    node.start,
                    f"add `{required}:` under fields (or under defaults for every rule)",
                )
        plans = [plan for plan in merged.values() if plan is not None]
        plans.sort(key=_field_order)
        paths = [plan.path for plan in plans]
        plans = [_with_copy(plan, any(p.startswith(plan.path + ".") for p in paths)) for plan in plans]
        ordering = {
            key: self.field(key, node[key], node.value_mark(key), kind)
            for key, kind in ORDERING_KEYS.items()
            if key in node
        }
        if not isinstance(name, str):
            return None
        return Rule(
            event_type,
            index,
            node.start[0],
            name,
            when,
            when_text,
            tuple(plans),
            generate.rule_function(when_node, when, plans),
            ordering_key=ordering.get("ordering_key"),
            sequence=ordering.get("sequence"),
        )

    # -- fields and expressions ----------------------------------------------------------------------------

    def fields(self, node: Any, mark: Mark, where: str) -> dict[str, FieldPlan | None]:
        if not isinstance(node, yamlsrc.YamlMap):
            key = "defaults" if where == "defaults" else "fields"
            self.error(f"{where}: `{key}` must be a mapping of canonical field -> expression", mark)
            self.broken.update(REQUIRED_FIELDS)
            return {}
        plans: dict[str, FieldPlan | None] = {}
        for path, value in node.items():
            key_mark, value_mark = node.key_mark(path), node.value_mark(path)
            if path == "name" or path.startswith("source."):
                what = "the rule's `name:`" if path == "name" else "the engine from the webhook"
                self.error(f"{path!r} is set by {what}", key_mark, f"remove {path} from the fields")
                continue
            if not is_known_field(path):
                guess = analysis.closest(path, FIELDS)
                hint = f"did you mean {guess!r}?" if guess else "see the field table in docs/mappings.md"
                self.error(
                    f"unknown canonical field {path!r}", key_mark, hint + " (free-form values go under properties.)"
                )
                continue
            errors_before = len(self.errors)
            plan = self.field(path, value, value_mark)
            if plan is not None:
                plans[path] = plan
            elif value is None:
                plans[path] = None
            elif len(self.errors) > errors_before:
                self.broken.add(path)  # already reported: no second "sets no id" error for it
        return plans

    def field(self, path: str, value: Any, mark: Mark, kind: str | None = None) -> FieldPlan | None:
        kind = kind or FIELDS.get(path)
        if value is None:
            return None  # an explicit null: this rule leaves the field out (overrides a default)
        if isinstance(value, bool | int | float):
            if kind is not None:
                try:
                    coerce(kind, value)
                except FieldValueError as exc:
                    self.error(f"{path}: {exc}", mark, analysis.KIND_HINTS.get(kind))
                    return None
            constant = value
            return FieldPlan(path, repr(value), lambda document: constant, coercer(kind), False, None, kind)
        if not isinstance(value, str):
            self.error(
                f"{path}: expected a JMESPath expression (text) or a constant, got {type(value).__name__}",
                mark,
                'write JSON constants as JMESPath literals, e.g. \'`["a", "b"]`\'',
            )
            return None
        ast, tokens = self.parse(value, mark)
        if ast is None:
            return None
        problems = analysis.check_functions(ast, tokens)
        if kind is not None and not problems:
            problems = [
                analysis.Problem(f"{path}: {p.message}", p.offset, p.hint)
                for p in analysis.check_kind(kind, ast, tokens)
            ]
        self.report(problems, value, mark)
        if problems:
            return None
        # minor_to_major()/decimal() and to_rfc3339()/from_ms() already give canonical money and time text
        canonical = (kind, analysis.result_type(ast)) in (("money", "decimal"), ("time", "time"))
        return FieldPlan(path, value, fast.build(ast), None if canonical else coercer(kind), False, ast, kind)

    def condition(self, value: Any, mark: Mark) -> tuple[fast.Getter | None, str | None, dict[str, Any] | None]:
        if value is None or value is False:
            self.error(
                f"rule can never match: `when` is {'null' if value is None else 'false'}",
                mark,
                "remove the rule or fix the condition",
            )
            return None, None, None
        if not isinstance(value, str):
            self.error(
                "`when` must be a JMESPath expression (text)", mark, "remove `when` to emit on every event of the type"
            )
            return None, None, None
        ast, tokens = self.parse(value, mark)
        if ast is None:
            return None, None, None
        problems = analysis.check_functions(ast, tokens)
        if not problems:
            never = analysis.never_matches(ast, tokens)
            problems = [never] if never else []
        self.report(problems, value, mark)
        return fast.build(ast), value, ast

    def parse(self, expression: str, mark: Mark) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        problem: analysis.Problem | None
        if not expression.strip():
            hint = "remove it (a field can be null to leave it out)"
            self.report([analysis.Problem("the expression is empty", 0, hint)], expression, mark)
            return None, []
        try:
            parsed = jmespath.compile(expression)
            tokens = analysis.tokenize(expression)
        except LexerError as exc:
            problem = analysis.Problem(f"JMESPath syntax error: {exc.message}", exc.lex_position, SYNTAX_HINT)
        except IncompleteExpressionError:
            problem = analysis.Problem(
                "JMESPath syntax error: the expression ends too early", len(expression), SYNTAX_HINT
            )
        except ParseError as exc:
            got = f"unexpected {exc.token_value!r}" if exc.token_value else exc.msg
            problem = analysis.Problem(f"JMESPath syntax error: {got}", exc.lex_position, SYNTAX_HINT)
        except JMESPathError as exc:
            problem = analysis.Problem(f"JMESPath syntax error: {exc}", 0, SYNTAX_HINT)
        else:
            problem = None
        if problem is not None:
            self.report([problem], expression, mark)
            return None, []
        ast: dict[str, Any] = parsed.parsed
        if analysis.uses_headers(ast):
            self.uses_headers = True
        if analysis.uses_received_at(ast):
            self.uses_received_at = True
        return ast, tokens

    def report(self, problems: Iterable[analysis.Problem], expression: str, mark: Mark) -> None:
        for problem in problems:
            self.error(problem.message, self.position(mark, expression, problem.offset), problem.hint)

    def position(self, mark: Mark, expression: str, offset: int) -> Mark:
        """The line and column of character `offset` of an expression whose YAML scalar starts at `mark`."""
        line, column = mark
        text = self.lines[line - 1] if 0 < line <= len(self.lines) else ""
        lead = text[column - 1 : column]
        if lead == "|":  # literal block: the expression's lines are the source lines, minus indentation
            before = expression[:offset]
            opening = next((row for row in self.lines[line:] if row.strip()), "")
            indent = len(opening) - len(opening.lstrip(" "))  # the block's indentation, set by its first line
            return line + 1 + before.count("\n"), indent + offset - (before.rfind("\n") + 1) + 1
        if lead == ">":
            return self._folded(line + 1, offset)
        start = column + (1 if lead in ("'", '"') else 0)
        on_first_line = len(text.rstrip()) - (start - 1)
        if offset <= on_first_line or line >= len(self.lines):
            return line, start + offset
        return self._folded(line + 1, offset - on_first_line - 1)

    def _folded(self, row: int, remaining: int) -> Mark:
        """Continuation lines of a folded scalar: each line adds its stripped text plus one space."""
        while row <= len(self.lines):
            source = self.lines[row - 1]
            content = source.strip()
            indent = len(source) - len(source.lstrip())
            if remaining <= len(content):
                return row, indent + remaining + 1
            remaining -= len(content) + 1
            row += 1
        return row - 1, 1


def _field_order(plan: FieldPlan) -> tuple[int, str]:
    if plan.path in _ORDER:
        return (_ORDER[plan.path], "")
    return (_ORDER["properties"], plan.path)


def _with_copy(plan: FieldPlan, copy: bool) -> FieldPlan:
    if copy == plan.copy:
        return plan
    return FieldPlan(plan.path, plan.expression, plan.get, plan.coerce, copy, plan.node, plan.kind)
