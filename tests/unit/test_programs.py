"""Feature programs: static checks, dependency extraction, return forms, executor, cycles."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from raptor.api.names import parse_selector
from raptor.api.primitives import Primitive
from raptor.engine.programs import (
    BLOCKED_BUILTINS,
    Context,
    Program,
    ProgramExecutor,
    ProgramResult,
    check_packages,
    compile_program,
    find_cycle,
)
from raptor.errors import ManifestError, ProgramError, ProgramRuntimeError, StateUnavailable

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def load(
    code: str,
    primitive: Primitive = Primitive.INT,
    *,
    fqn: str = "default.f",
    namespace: str = "default",
    keys: tuple[str, ...] = ("k",),
    allowed: tuple[str, ...] = (),
) -> Program:
    return compile_program(
        textwrap.dedent(code),
        fqn=fqn,
        namespace=namespace,
        primitive=primitive,
        keys=keys,
        allowed_imports=allowed,
    )


def rejected(code: str, primitive: Primitive = Primitive.INT, **kw: Any) -> str:
    with pytest.raises(ProgramError) as info:
        load(code, primitive, **kw)
    assert info.value.field == "spec.builder.code"
    assert "feature default.f" in str(info.value)
    return str(info.value)


def ctx(keys: dict[str, str] | None = None, **kw: Any) -> Context:
    return Context("default.f", "default", keys if keys is not None else {"k": "v"}, T0, **kw)


def returning(expr: str, primitive: Primitive = Primitive.INT, **kw: Any) -> Program:
    hint = {Primitive.INT: "int", Primitive.STRING: "str", Primitive.INT_LIST: "list[int]"}
    return load(f"def h(r, c) -> {hint[primitive]}:\n    return {expr}\n", primitive, **kw)


# -- loading: shape ---------------------------------------------------------------------------


def test_program_loads_with_free_parameter_names_and_keeps_its_source() -> None:
    code = "def handler(data, c) -> int:\n    return data['x']\n"
    program = load(code)
    assert program.param_names == ("data", "c")
    assert (program.fqn, program.namespace, program.primitive) == (
        "default.f",
        "default",
        Primitive.INT,
    )
    assert program.source == code
    assert program.run({"x": 3}, ctx()).value == 3


def test_program_error_is_a_manifest_error_on_builder_code() -> None:
    with pytest.raises(ManifestError) as info:
        load("def h(row, ctx) -> int:\n    return (\n")
    assert isinstance(info.value, ProgramError)
    assert info.value.field == "spec.builder.code"


def test_syntax_error_names_feature_and_line() -> None:
    message = rejected("def h(row, ctx) -> int:\n    x = 1\n    return x +\n")
    assert "syntax error" in message
    assert "(line 3)" in message


def test_empty_code_is_rejected() -> None:
    assert "empty" in rejected("   \n")


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("x = 1\n", "at the top level, not Assign"),
        ("import math\n", "defines no function"),
        ("def a(r, c) -> int:\n    return 1\ndef b(r, c) -> int:\n    return 2\n", "2 top-level"),
        ("X = 1\ndef h(r, c) -> int:\n    return X\n", "not Assign"),
        ("class A: pass\ndef h(r, c) -> int:\n    return 1\n", "not ClassDef"),
        ("async def h(r, c) -> int:\n    return 1\n", "not async def"),
        ("@staticmethod\ndef h(r, c) -> int:\n    return 1\n", "may not be decorated"),
        ("def h(r) -> int:\n    return 1\n", "exactly two positional parameters"),
        ("def h(r, c, d) -> int:\n    return 1\n", "exactly two positional parameters"),
        ("def h(r, c, *a) -> int:\n    return 1\n", "exactly two positional parameters"),
        ("def h(r, c, *, k=1) -> int:\n    return 1\n", "exactly two positional parameters"),
        ("def h(r, c, **kw) -> int:\n    return 1\n", "exactly two positional parameters"),
        ("def h(r, c=print()) -> int:\n    return 1\n", "defaults must be constants"),
        ("def h(r, c) -> int:\n    yield 1\n", "not yield"),
    ],
)
def test_module_shape_is_enforced(code: str, needle: str) -> None:
    assert needle in rejected(code)


def test_docstrings_and_imports_may_surround_the_function() -> None:
    code = '"""doc"""\nimport math\nfrom statistics import mean\ndef h(r, c) -> float:\n'
    code += '    """doc"""\n    return math.floor(mean([1, 2]))\n'
    assert load(code, Primitive.FLOAT).run({}, ctx()).value == 1.0


def test_a_nested_generator_is_fine() -> None:
    code = "def h(r, c) -> int:\n    def gen():\n        yield 2\n    return sum(gen())\n"
    assert load(code).run({}, ctx()).value == 2


# -- loading: recursion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "needle"),
    [
        ("def h(r, c) -> int:\n    return h(r, c)\n", "h calls itself (line 2)"),
        (
            "def h(r, c) -> int:\n    def fact(n):\n"
            "        return 1 if n < 2 else n * fact(n - 1)\n    return fact(3)\n",
            "fact calls itself (line 3)",
        ),
        (
            "def h(r, c) -> int:\n    def a(n):\n        return b(n)\n    def b(n):\n"
            "        return a(n)\n    return a(1)\n",
            "a -> b -> a",
        ),
    ],
)
def test_recursion_is_rejected(code: str, needle: str) -> None:
    message = rejected(code)
    assert "recursion is not allowed" in message
    assert needle in message


def test_calling_a_nested_helper_is_not_recursion() -> None:
    code = "def h(r, c) -> int:\n    def inc(n):\n        return n + 1\n    return inc(inc(1))\n"
    assert load(code).run({}, ctx()).value == 3


# -- loading: policy lint ---------------------------------------------------------------------

REQUIRED_BLOCKED = [
    *("os", "sys", "subprocess", "socket", "shutil", "pathlib", "io", "importlib", "ctypes"),
    *("multiprocessing", "threading", "asyncio", "pickle", "requests", "urllib", "http"),
    *("pandas", "numpy", "sklearn", "scipy", "torch", "tensorflow", "xgboost", "lightgbm"),
]


@pytest.mark.parametrize("module", REQUIRED_BLOCKED)
@pytest.mark.parametrize("form", ["import {m}", "from {m} import thing", "import {m}.sub as s"])
def test_blocked_imports_are_rejected_at_top_level_and_inside(module: str, form: str) -> None:
    statement = form.format(m=module)
    outside = rejected(f"{statement}\ndef h(r, c) -> int:\n    return 1\n")
    assert f"import of '{module}" in outside
    assert "(line 1)" in outside
    inside = rejected(f"def h(r, c) -> int:\n    {statement}\n    return 1\n")
    assert "(line 2)" in inside


def test_allowed_imports_lift_the_block_by_top_level_package() -> None:
    code = "def h(r, c) -> int:\n    import os.path\n    return len(os.path.join('a', 'b'))\n"
    assert "import of 'os.path'" in rejected(code)
    assert load(code, allowed=("os",)).run({}, ctx()).value == 3


def test_relative_imports_are_rejected() -> None:
    assert "relative imports" in rejected(
        "def h(r, c) -> int:\n    from . import x\n    return 1\n"
    )


@pytest.mark.parametrize("name", sorted(BLOCKED_BUILTINS))
def test_blocked_builtins_are_rejected(name: str) -> None:
    message = rejected(f"def h(r, c) -> int:\n    x = 1\n    {name}('1')\n    return x\n")
    assert f"{name}() is not allowed" in message
    assert "(line 3)" in message


def test_required_builtins_are_all_blocked() -> None:
    required = "eval exec compile open __import__ globals locals vars input breakpoint exit quit"
    assert set(required.split()) <= BLOCKED_BUILTINS


def test_a_program_may_use_a_blocked_builtin_name_it_binds_itself() -> None:
    code = "def h(r, c) -> str:\n    input = r['input']\n    return input\n"
    assert load(code, Primitive.STRING).run({"input": "x"}, ctx()).value == "x"


@pytest.mark.parametrize(
    "expr",
    [
        "r.__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "h.__globals__",
        "__builtins__",
        "c.get_feature.__self__",
        "getattr(r, '__class__')",
        "r.__dict__",
    ],
)
def test_dunder_access_is_rejected(expr: str) -> None:
    message = rejected(f"def h(r, c) -> int:\n    x = {expr}\n    return 1\n")
    assert "is not allowed" in message
    assert "__" in message


def test_dunder_name_is_allowed() -> None:
    code = "def h(r, c) -> str:\n    return type(r).__name__\n"
    assert load(code, Primitive.STRING).run({}, ctx()).value == "dict"


def test_all_policy_problems_are_reported_together_in_line_order() -> None:
    code = "def h(r, c) -> str:\n    import os\n    eval('1')\n    return h(r, c)\n"
    message = rejected(code)
    parts = [
        "import of 'os' is not allowed in programs (line 2)",
        "eval() is not allowed in programs (line 3)",
        "recursion is not allowed: h calls itself (line 4)",
        "h is annotated -> str but spec.primitive is int (annotate it -> int) (line 1)",
    ]
    for part in parts:
        assert part in message
    assert message.index("(line 1)") < message.index("(line 2)") < message.index("(line 4)")


# -- loading: annotations ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "primitive"),
    [
        ("str", Primitive.STRING),
        ("int", Primitive.INT),
        ("float", Primitive.FLOAT),
        ("bool", Primitive.BOOL),
        ("datetime", Primitive.TIMESTAMP),
        ("datetime.datetime", Primitive.TIMESTAMP),
        ("list[int]", Primitive.INT_LIST),
        ("List[str]", Primitive.STRING_LIST),
        ("typing.List[float]", Primitive.FLOAT_LIST),
        ("List[bool]", Primitive.BOOL_LIST),
        ("List[datetime.datetime]", Primitive.TIMESTAMP_LIST),
        ("list[datetime]", Primitive.TIMESTAMP_LIST),
        ("Optional[int]", Primitive.INT),
        ("typing.Optional[str]", Primitive.STRING),
        ("int | None", Primitive.INT),
        ("None | float", Primitive.FLOAT),
        ("Union[int, None]", Primitive.INT),
        ("Optional[List[datetime.datetime]]", Primitive.TIMESTAMP_LIST),
        ("list[bool] | None", Primitive.BOOL_LIST),
        ("'int'", Primitive.INT),
    ],
)
def test_return_annotation_matching_the_primitive_is_accepted(
    annotation: str, primitive: Primitive
) -> None:
    program = load(f"def h(r, c) -> {annotation}:\n    return None\n", primitive)
    assert program.run({}, ctx()).value is None


@pytest.mark.parametrize(
    ("annotation", "primitive"),
    [
        ("str", Primitive.INT),
        ("int", Primitive.FLOAT),
        ("bool", Primitive.INT),
        ("List[int]", Primitive.INT),
        ("int", Primitive.INT_LIST),
        ("List[str]", Primitive.INT_LIST),
        ("list[list[int]]", Primitive.INT_LIST),
        ("List[Optional[int]]", Primitive.INT_LIST),
        ("Optional[Optional[int]]", Primitive.INT),
        ("Union[int, str]", Primitive.INT),
        ("dict", Primitive.INT),
        ("Any", Primitive.INT),
        ("datetime.date", Primitive.TIMESTAMP),
    ],
)
def test_return_annotation_mismatch_shows_both(annotation: str, primitive: Primitive) -> None:
    message = rejected(f"def h(r, c) -> {annotation}:\n    return None\n", primitive)
    assert f"h is annotated -> {annotation} but spec.primitive is {primitive.value}" in message


def test_annotation_mismatch_message_matches_the_documented_form() -> None:
    message = rejected("def handler(row, ctx) -> str:\n    return 'x'\n", Primitive.INT)
    assert "feature default.f: handler is annotated -> str but spec.primitive is int" in message
    assert "annotate it -> int" in message


def test_missing_return_annotation_is_rejected_with_the_expected_one() -> None:
    message = rejected("def h(r, c):\n    return []\n", Primitive.TIMESTAMP_LIST)
    assert "h has no return annotation; annotate it -> list[datetime]" in message
    assert "spec.primitive []timestamp" in message


def test_annotations_are_never_evaluated() -> None:
    code = "def h(row: pd.DataFrame, ctx: Undefined) -> List[str]:\n    return ['a']\n"
    assert load(code, Primitive.STRING_LIST).run({}, ctx()).value == ["a"]


def test_program_globals_provide_time_and_helpers() -> None:
    code = """\
    def h(row, ctx) -> datetime.datetime:
        tz = timezone(timedelta(hours=2))
        day = datetime.datetime(2024, 1, 1, math.floor(2.5), tzinfo=tz)
        assert json.loads('[1]') == [1] and re.match('a', 'a')
        x: Dict[str, Any] = {}
        return day
    """
    value = load(code, Primitive.TIMESTAMP).run({}, ctx()).value
    assert value == datetime(2024, 1, 1, 0, tzinfo=UTC)


def test_a_module_level_import_failure_is_a_program_error() -> None:
    code = "import no_such_module_xyz\ndef h(r, c) -> int:\n    return 1\n"
    assert "ModuleNotFoundError" in rejected(code)


# -- loading: dependencies --------------------------------------------------------------------


def test_literal_dependencies_are_extracted_defaulted_deduplicated_in_order() -> None:
    code = """\
    def h(row, c) -> int:
        a, _ = c.get_feature("spend+sum")
        b, _ = c.get_prediction("shop.churn", keys={"k": "x"})
        d, _ = c.get_feature("Spend+SUM")
        e, _ = c.get_feature(selector="hello-world")
        f, _ = c.get_feature("spend+sum")
        return 1
    """
    program = load(code, namespace="team")
    assert program.dependencies == (
        parse_selector("team.spend+sum"),
        parse_selector("shop.churn"),
        parse_selector("team.hello_world"),
    )
    assert program.dynamic_dependencies is False


@pytest.mark.parametrize(
    "call",
    [
        "c.get_feature(row['name'])",
        "c.get_feature(f'x{1}')",
        "c.get_prediction(*row['args'])",
        "(lambda g: g('x'))(c.get_feature)",
        "other.get_feature('x')",
    ],
)
def test_non_literal_dependencies_set_the_dynamic_flag(call: str) -> None:
    code = f"def h(row, c) -> int:\n    other = c\n    v = {call}\n    return 1\n"
    program = load(code)
    assert program.dynamic_dependencies is True


def test_malformed_literal_selector_is_a_program_error_with_line() -> None:
    message = rejected(
        "def h(row, ctx) -> int:\n    v = ctx.get_feature('a+sum@-1')\n    return 1\n"
    )
    assert "ctx.get_feature(): selector 'a+sum@-1' combines +sum with @-1" in message
    assert "(line 2)" in message


def test_a_program_without_dependencies_has_none() -> None:
    program = load("def h(r, c) -> int:\n    return 1\n")
    assert program.dependencies == ()
    assert program.dynamic_dependencies is False


# -- running: return forms ---------------------------------------------------------------------


def test_plain_value_and_none() -> None:
    assert returning("7").run({}, ctx()) == ProgramResult(7, None, None)
    assert returning("None").run({}, ctx()) == ProgramResult(None)


def test_values_are_checked_and_normalized_by_the_primitive() -> None:
    floats = load("def h(r, c) -> float:\n    return r['v']\n", Primitive.FLOAT)
    assert floats.run({"v": 2}, ctx()).value == 2.0
    assert isinstance(floats.run({"v": 2}, ctx()).value, float)
    lists = returning("[1, 2]", Primitive.INT_LIST)
    assert lists.run({}, ctx()).value == [1, 2]


@pytest.mark.parametrize("expr", ["'7'", "True", "2**63", "1.5", "[1]"])
def test_wrong_value_type_is_a_runtime_error_naming_feature_and_value(expr: str) -> None:
    with pytest.raises(ProgramRuntimeError) as info:
        returning(expr).run({}, ctx())
    message = str(info.value)
    assert message.startswith("feature default.f: program returned ")
    assert "does not match spec.primitive" in message


def test_value_with_keys_dict() -> None:
    result = returning("(3, {'k': 'a', 'n': 5})").run({}, ctx())
    assert result == ProgramResult(3, {"k": "a", "n": "5"}, None)


def test_value_keys_and_timestamp_normalized_to_utc() -> None:
    aware = datetime(2024, 1, 1, 14, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2024, 1, 1, 12)
    for stamp in (aware, naive, datetime(2024, 1, 1, 12, tzinfo=UTC)):
        program = load("def h(r, c) -> int:\n    return 1, {'k': 'a'}, r['ts']\n")
        result = program.run({"ts": stamp}, ctx())
        assert result.timestamp == datetime(2024, 1, 1, 12, tzinfo=UTC)
        assert result.timestamp is not None
        assert result.timestamp.tzinfo is UTC
        assert result.keys == {"k": "a"}


def test_none_keys_and_timestamp_mean_the_contexts() -> None:
    assert returning("(1, None, None)").run({}, ctx()) == ProgramResult(1)
    assert returning("(None, None)").run({}, ctx()) == ProgramResult(None)


@pytest.mark.parametrize(("expr", "key"), [("(1, 'b')", "b"), ("(1, 42)", "42")])
def test_bare_key_for_a_single_key_feature(expr: str, key: str) -> None:
    assert returning(expr).run({}, ctx()).keys == {"k": key}


@pytest.mark.parametrize("keys", [(), ("a", "b")])
def test_bare_key_needs_exactly_one_feature_key(keys: tuple[str, ...]) -> None:
    with pytest.raises(
        ProgramRuntimeError, match="a bare key 'b' needs a feature with exactly one"
    ):
        returning("(1, 'b')", keys=keys).run({}, ctx())


def test_upstream_value_timestamp_key_order_is_accepted_when_unambiguous() -> None:
    code = "def h(data, ctx) -> int:\n    return 1, ctx.timestamp, ctx.keys['k'].split(':')[1]\n"
    result = load(code).run({}, ctx({"k": "a:b"}))
    assert result == ProgramResult(1, {"k": "b"}, T0)
    as_dict = returning("(1, c.timestamp, {'k': 'z'})").run({}, ctx())
    assert as_dict == ProgramResult(1, {"k": "z"}, T0)


@pytest.mark.parametrize(
    "expr",
    ["(1, c.timestamp, 5)", "(1, c.timestamp, None)", "(1, c.timestamp, c.timestamp)"],
)
def test_ambiguous_timestamp_first_order_is_rejected(expr: str) -> None:
    with pytest.raises(ProgramRuntimeError) as info:
        returning(expr).run({}, ctx())
    assert "accepted only with keys as a str or dict" in str(info.value)
    assert "feature default.f: program returned tuple" in str(info.value)


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("(1, c.timestamp)", "keys must be a dict"),
        ("(1, 2, 3, 4)", "return a list for a list value"),
        ("(1,)", "a tuple is a return form"),
        ("(1, {'k': 'a'}, 'yesterday')", "the timestamp must be a datetime or None"),
        ("(1, {'k': 1.5})", "is not a str or int"),
        ("(1, {'k': True})", "is not a str or int"),
        ("(1, [1])", "keys must be a dict"),
    ],
)
def test_malformed_return_forms_are_runtime_errors(expr: str, needle: str) -> None:
    with pytest.raises(ProgramRuntimeError, match=r"feature default\.f: program returned") as info:
        returning(expr).run({}, ctx())
    assert needle in str(info.value)


def test_a_tuple_is_never_a_list_value() -> None:
    with pytest.raises(ProgramRuntimeError, match="return a list for a list value"):
        returning("(1, 2, 3, 4)", Primitive.INT_LIST).run({}, ctx())


def test_program_exception_is_wrapped_with_its_line_and_chained() -> None:
    code = """\
    def h(row, ctx) -> int:
        def helper(x):
            return x + 1
        y = 2
        return helper(row['s'])
    """
    with pytest.raises(ProgramRuntimeError) as info:
        load(code).run({"s": "text"}, ctx())
    assert str(info.value).startswith("feature default.f: program raised TypeError: ")
    assert str(info.value).endswith("(line 3)")
    assert isinstance(info.value.__cause__, TypeError)


def test_key_error_and_system_exit_are_wrapped() -> None:
    with pytest.raises(ProgramRuntimeError, match=r"program raised KeyError: 'x' \(line 2\)"):
        load("def h(r, c) -> int:\n    return r['x']\n").run({}, ctx())
    with pytest.raises(ProgramRuntimeError, match="program raised SystemExit"):
        load("def h(r, c) -> int:\n    raise SystemExit(3)\n").run({}, ctx())


def test_raptor_errors_raised_through_ctx_propagate_unchanged() -> None:
    def down(selector: str, keys: Any) -> tuple[Any, datetime | None]:
        raise StateUnavailable("redis is down")

    program = load("def h(r, c) -> int:\n    return c.get_feature('x')[0]\n")
    with pytest.raises(StateUnavailable):
        program.run({}, ctx(get_feature=down))


# -- context and result -----------------------------------------------------------------------


def test_context_delegates_with_its_own_keys_by_default() -> None:
    calls: list[tuple[str, str, Any]] = []

    def feature(selector: str, keys: Any) -> tuple[Any, datetime | None]:
        calls.append(("f", selector, keys))
        return 5, T0

    def prediction(selector: str, keys: Any) -> tuple[Any, datetime | None]:
        calls.append(("p", selector, keys))
        return 0.5, None

    c = ctx({"k": "v"}, get_feature=feature, get_prediction=prediction)
    assert c.get_feature("a") == (5, T0)
    assert c.get_feature("a", {"k": "w"}) == (5, T0)
    assert c.get_prediction("m") == (0.5, None)
    assert calls == [("f", "a", {"k": "v"}), ("f", "a", {"k": "w"}), ("p", "m", {"k": "v"})]
    assert (c.fqn, c.namespace, c.keys, c.timestamp) == ("default.f", "default", {"k": "v"}, T0)


def test_context_without_getters_reports_missing_values() -> None:
    assert ctx().get_feature("x") == (None, None)
    assert ctx().get_prediction("x") == (None, None)


def test_context_and_result_are_slotted_and_result_is_frozen() -> None:
    assert not hasattr(ctx(), "__dict__")
    result = ProgramResult(1, {"k": "v"}, T0)
    assert not hasattr(result, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.value = 2  # type: ignore[misc]
    assert result == ProgramResult(1, {"k": "v"}, T0) != ProgramResult(1)


# -- executor ---------------------------------------------------------------------------------

SPIN = "def h(row, ctx) -> int:\n    while True:\n        pass\n"


@pytest.fixture
def executor() -> Iterator[ProgramExecutor]:
    ex = ProgramExecutor(max_workers=1, grace=0.5)
    yield ex
    ex.close()


def _thread_program() -> Program:
    code = "def h(row, ctx) -> int:\n    import threading\n    return threading.get_ident()\n"
    return load(code, allowed=("threading",))


async def test_executor_runs_programs_in_a_worker_thread(executor: ProgramExecutor) -> None:
    result = await executor.run(_thread_program(), {}, ctx(), hard_limit=5)
    assert result.value != threading.get_ident()


async def test_hard_limit_interrupts_a_runaway_program_and_the_pool_keeps_working(
    executor: ProgramExecutor,
) -> None:
    started = time.monotonic()
    with pytest.raises(ProgramRuntimeError) as info:
        await executor.run(load(SPIN), {}, ctx(), hard_limit=0.2)
    assert str(info.value) == "feature default.f: program exceeded its hard time limit of 0.2s"
    assert time.monotonic() - started < 2.0  # SPIN never ends by itself
    for n in range(3):  # the single worker thread survived and serves again
        assert (await executor.run(returning(str(n)), {}, ctx(), hard_limit=5)).value == n


async def test_a_program_swallowing_the_interrupt_still_fails(executor: ProgramExecutor) -> None:
    code = """\
    def h(row, ctx) -> int:
        caught = 0
        while caught < 2:
            try:
                while True:
                    pass
            except BaseException:
                caught += 1
        return 1
    """
    with pytest.raises(ProgramRuntimeError, match="exceeded its hard time limit"):
        await executor.run(load(code), {}, ctx(), hard_limit=0.1)
    assert (await executor.run(returning("1"), {}, ctx(), hard_limit=5)).value == 1


async def test_a_program_blocked_in_c_is_given_up_after_the_grace() -> None:
    executor = ProgramExecutor(max_workers=2, grace=0.2)
    code = "def h(row, ctx) -> int:\n    import time\n    time.sleep(2.5)\n    return 1\n"
    started = time.monotonic()
    with pytest.raises(ProgramRuntimeError, match="did not stop when interrupted"):
        await executor.run(load(code), {}, ctx(), hard_limit=0.1)
    assert time.monotonic() - started < 2.0  # did not wait for the sleep to end
    assert (await executor.run(returning("2"), {}, ctx(), hard_limit=5)).value == 2
    executor.close()


async def test_cancelling_the_caller_does_not_stop_the_computation(
    executor: ProgramExecutor,
) -> None:
    code = """\
    def h(row, ctx) -> int:
        import time
        time.sleep(0.2)
        row['done'].append(1)
        return 1
    """
    row: dict[str, Any] = {"done": []}
    task = asyncio.ensure_future(executor.run(load(code), row, ctx(), hard_limit=5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.35)
    assert row["done"] == [1]


async def test_shielded_run_finishes_in_the_background_after_a_soft_timeout(
    executor: ProgramExecutor,
) -> None:
    code = "def h(row, ctx) -> int:\n    import time\n    time.sleep(0.15)\n    return 9\n"
    inner = asyncio.ensure_future(executor.run(load(code), {}, ctx(), hard_limit=5))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(inner), 0.02)
    assert (await inner).value == 9


async def test_hard_limit_still_applies_after_the_caller_is_cancelled(
    executor: ProgramExecutor,
) -> None:
    task = asyncio.ensure_future(executor.run(load(SPIN), {}, ctx(), hard_limit=0.2))
    await asyncio.sleep(0.05)
    task.cancel()
    started = time.monotonic()
    result = await executor.run(returning("5"), {}, ctx(), hard_limit=5)  # queued behind SPIN
    assert result.value == 5
    assert time.monotonic() - started < 2.0  # SPIN never ends by itself


async def test_run_many_runs_a_batch_in_one_hop_in_order(executor: ProgramExecutor) -> None:
    ids = _thread_program()
    bad = load("def h(r, c) -> int:\n    return r['missing']\n")
    calls: list[tuple[Program, dict[str, Any], Context]] = [
        (ids, {}, ctx()),
        (bad, {}, ctx()),
        (load(SPIN), {}, ctx()),
        (ids, {}, ctx()),
    ]
    outcomes = await executor.run_many(calls, hard_limit=0.2)
    assert len(outcomes) == 4
    first, second, third, fourth = outcomes
    assert isinstance(first, ProgramResult)
    assert isinstance(fourth, ProgramResult)
    assert first.value == fourth.value != threading.get_ident()
    assert isinstance(second, ProgramRuntimeError)
    assert "KeyError" in str(second)
    assert isinstance(third, ProgramRuntimeError)
    assert "hard time limit" in str(third)
    assert await executor.run_many([], hard_limit=1) == []


async def test_interrupts_never_leak_into_later_calls() -> None:
    """Calls finishing right at their hard limit: whatever happens to them, the calls after
    them are never hit by a stray interrupt."""
    executor = ProgramExecutor(max_workers=2, grace=1.0, retry_interval=0.001)
    busy = load(
        "def h(row, ctx) -> int:\n    n = 0\n    while n < row['n']:\n        n += 1\n"
        "    return n\n"
    )
    racing = [(busy, {"n": 20_000 + 500 * i}, ctx()) for i in range(40)]
    outcomes = await asyncio.gather(
        *(executor.run_many(racing[i::4], hard_limit=0.001) for i in range(4))
    )
    for batch in outcomes:
        for outcome in batch:
            assert isinstance(outcome, ProgramResult) or "hard time limit" in str(outcome)
    quick = [(busy, {"n": 10}, ctx()) for _ in range(300)]
    results = await executor.run_many(quick, hard_limit=5)
    assert all(isinstance(r, ProgramResult) and r.value == 10 for r in results)
    executor.close()


async def test_run_rows_runs_one_program_on_many_rows_in_one_hop(
    executor: ProgramExecutor,
) -> None:
    code = """\
    def h(row, ctx) -> int:
        if row["x"] == 1:
            return None
        if row["x"] == 2:
            return 5, "other"
        if row["x"] == 3:
            return row["missing"]
        if row["x"] == 4:
            return "not an int"
        return row["x"] * 10
    """
    program = load(code, keys=("k",))
    rows = [{"x": x} for x in range(6)]
    outcomes = await executor.run_rows(program, rows, ctx(), hard_limit=5)
    zero, none, form, raised, wrong, fifty = outcomes
    assert (zero, none, fifty) == (0, None, 50)  # plain values come back bare
    assert form == ProgramResult(5, {"k": "other"})
    assert isinstance(raised, ProgramRuntimeError)
    assert "KeyError" in str(raised)
    assert isinstance(wrong, ProgramRuntimeError)
    assert "spec.primitive" in str(wrong)
    assert await executor.run_rows(program, [], ctx(), hard_limit=5) == []


async def test_run_rows_gives_each_row_its_own_context(executor: ProgramExecutor) -> None:
    program = load("def h(row, ctx) -> str:\n    return ctx.keys['k']\n", Primitive.STRING)
    assert program.uses_context
    contexts = [ctx({"k": str(i)}) for i in range(3)]
    assert await executor.run_rows(program, [{}] * 3, contexts, hard_limit=5) == ["0", "1", "2"]


def test_a_program_that_never_names_its_context_does_not_use_it() -> None:
    assert not returning("row['x']").uses_context
    assert load("def h(row, c) -> int:\n    return c.keys\n").uses_context
    assert load("def h(row, c) -> int:\n    f = lambda: c\n    return 1\n").uses_context


async def test_a_runaway_row_is_stopped_and_the_other_rows_still_run(
    executor: ProgramExecutor,
) -> None:
    code = """\
    def h(row, ctx) -> int:
        while row["spin"]:
            pass
        return row["n"]
    """
    program = load(code)
    rows = [{"spin": i == 2, "n": i} for i in range(5)]
    started = time.monotonic()
    outcomes = await executor.run_rows(program, rows, ctx(), hard_limit=0.2)
    assert time.monotonic() - started < 2.0
    assert outcomes[:2] == [0, 1]
    assert outcomes[3:] == [3, 4]
    assert str(outcomes[2]) == "feature default.f: program exceeded its hard time limit of 0.2s"


async def test_interrupts_never_leak_into_later_rows() -> None:
    """Rows finishing right at their hard limit: whatever happens to them, the rows after
    them are never reported as timed out unless they ran past the limit themselves."""
    executor = ProgramExecutor(max_workers=2, grace=1.0, retry_interval=0.001)
    busy = load(
        "def h(row, ctx) -> int:\n    n = 0\n    while n < row['n']:\n        n += 1\n"
        "    return n\n"
    )
    for _ in range(3):
        rows = [{"n": 20_000 + 500 * i} for i in range(40)]
        batches = await asyncio.gather(
            *(executor.run_rows(busy, rows[i::4], ctx(), hard_limit=0.001) for i in range(4))
        )
        for batch, sent in zip(batches, (rows[i::4] for i in range(4)), strict=True):
            for outcome, r in zip(batch, sent, strict=True):
                assert outcome == r["n"] or "hard time limit" in str(outcome)
    quick = [{"n": 10}] * 1000
    assert await executor.run_rows(busy, quick, ctx(), hard_limit=5) == [10] * 1000
    executor.close()


async def test_close_interrupts_running_programs_and_refuses_new_work() -> None:
    executor = ProgramExecutor(max_workers=1, grace=0.5)
    running = asyncio.ensure_future(executor.run(load(SPIN), {}, ctx(), hard_limit=60))
    queued = asyncio.ensure_future(executor.run(returning("1"), {}, ctx(), hard_limit=60))
    await asyncio.sleep(0.05)
    executor.close()
    with pytest.raises(ProgramRuntimeError, match="closed while the program ran"):
        await running
    with pytest.raises(ProgramRuntimeError, match="closed before the program ran"):
        await queued
    with pytest.raises(RuntimeError, match="closed"):
        await executor.run(returning("1"), {}, ctx(), hard_limit=1)


@pytest.mark.parametrize("limit", [0, -1.0, float("nan")])
async def test_hard_limit_must_be_positive(executor: ProgramExecutor, limit: float) -> None:
    with pytest.raises(ValueError, match="hard_limit"):
        await executor.run(returning("1"), {}, ctx(), hard_limit=limit)


# -- packages ---------------------------------------------------------------------------------


def test_check_packages_reports_missing_and_malformed_requirements_in_order() -> None:
    packages = [
        "pyyaml>=5.0",
        "PyYAML",
        "msgspec[yaml] >=0.1, <99",
        "json",
        "no-such-package-xyz==1.0",
        "bad name!",
        "another_missing_pkg_q",
    ]
    assert check_packages(packages) == [
        "no-such-package-xyz==1.0",
        "bad name!",
        "another_missing_pkg_q",
    ]
    assert check_packages([]) == []


# -- cycles -----------------------------------------------------------------------------------


def test_find_cycle_on_dags_is_none() -> None:
    assert find_cycle({}) is None
    assert find_cycle({"a": ["b", "c"], "b": ["c"], "c": [], "d": ["a", "zzz"]}) is None


def test_find_cycle_self_loop_and_short_cycles() -> None:
    assert find_cycle({"a": ["a"]}) == ["a"]
    assert find_cycle({"b": ["a"], "a": ["b"]}) == ["a", "b"]
    assert find_cycle({"x": ["y"], "y": ["z"], "z": ["y"]}) == ["y", "z"]


def test_find_cycle_long_cycle_is_returned_in_order_whatever_the_mapping_order() -> None:
    names = [f"n{i:04d}" for i in range(2000)]
    graph = {a: [b] for a, b in zip(names, names[1:] + names[:1], strict=True)}
    cycle = find_cycle(graph)
    assert cycle == names
    assert find_cycle(dict(reversed(list(graph.items())))) == names


def test_find_cycle_accepts_any_iterables_and_deep_chains() -> None:
    chain: dict[str, Any] = {f"c{i}": iter([f"c{i + 1}"]) for i in range(5000)}
    assert find_cycle(chain) is None  # iterative: no RecursionError
    assert find_cycle({"a": {"b"}, "b": (x for x in ["a"])}) == ["a", "b"]
