"""CAN frames → InfluxDB line protocol, through decoders compiled once per frame id from cantools databases.

cantools parses the DBC/KCD/ARXML files and defines the meaning of every bit; decoding frame after frame through
``Database.decode_message`` is exact but slow (a dict, a bitstruct call and a conversion object per signal).
`compile_bus` therefore turns each message into a small Python function, generated from its signals, that
extracts every signal with one ``int.from_bytes`` and shifts and masks, applies the same conversion cantools
applies (``raw * scale + offset`` with the DBC's own int/float literals, value tables, IEEE floats, simple and
extended multiplexing) and returns the finished line(s): the values are those ``decode_message`` returns,
bit for bit, at a fraction of the cost. Messages the generator does not handle (container PDUs, several
multiplexers side by side) fall back to cantools itself, so every message decodes.

A frame is a plain tuple ``(timestamp_s, key, flags, data)``: `key` is the arbitration id, with bit 31 set for
an extended (29-bit) id as cantools numbers them; `flags` holds `FD`, `BRS`, `ESI`, `REMOTE`, `ERROR`.

Output, by default one line per frame::

    EngineStatus,bus=powertrain,vehicle=ved-01 CoolantTemp=88i,EngineSpeed=3000.25,... 1700000000123456000

measurement = message name, tags = vehicle, bus and, for multiplexed messages, `mux` (the selector values,
outermost first, joined with ``/``), fields = signals, timestamp = the frame's, in ns (µs resolution, as CAN
logs have). `MessageMapping` renames the measurement and fields, selects signals and sends chosen signals to
a measurement of their own (one more line, same tags and timestamp).

>>> import cantools
>>> db = cantools.database.load_string('''VERSION ""
... BU_: ECU
... BO_ 256 Engine: 2 ECU
...  SG_ Rpm : 0|16@1+ (0.25,0) [0|16383.75] "rpm" ECU
... ''', database_format="dbc")
>>> bus = compile_bus([db], vehicle="car1", bus="can0")
>>> bus.decode_line(frame_key(0x100, False), bytes([0x10, 0x27]), 1700000000.5)
'Engine,bus=can0,vehicle=car1 Rpm=2500.0 1700000000500000000'
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cantools
from cantools.database import Database
from cantools.database.can import Message, Signal
from cantools.database.conversion import (
    IdentityConversion,
    LinearConversion,
    LinearIntegerConversion,
    NamedSignalConversion,
)

from telestack.can_gateway.errors import DatabaseError, DecodeFailure, MappingError
from telestack.can_gateway.settings import MessageMapping
from telestack.core.errors import LineProtocolError
from telestack.core.lineproto import Point, UInt, format_point

__all__ = [
    "BRS",
    "ERROR",
    "ESI",
    "EXTENDED",
    "FD",
    "REMOTE",
    "BusDecoder",
    "ChoiceMode",
    "DecodeFn",
    "Frame",
    "compile_bus",
    "decode_frames",
    "frame_key",
    "load_databases",
]

EXTENDED = 0x80000000  # bit 31 of a frame key: 29-bit id (cantools' own convention)
ID_MASK = 0x1FFFFFFF
FD, BRS, ESI, REMOTE, ERROR = 1, 2, 4, 8, 16
NOT_DECODABLE = REMOTE | ERROR

Frame = tuple[float, int, int, bytes]  # (timestamp s, key, flags, data)
DecodeFn = Callable[[bytes, float], str]
ChoiceMode = Literal["string", "number", "both"]


def frame_key(arbitration_id: int, is_extended: bool) -> int:
    """The dictionary key of a frame id: the id, with bit 31 set when it is an extended (29-bit) id."""
    return arbitration_id | EXTENDED if is_extended else arbitration_id


def describe_key(key: int) -> str:
    """A frame key as people write it: ``0x100`` (11-bit) or ``0x18FF5010x`` (29-bit)."""
    return f"0x{key & ID_MASK:08X}x" if key & EXTENDED else f"0x{key:03X}"


# --- loading --------------------------------------------------------------------------------------------


def load_databases(paths: Iterable[Path | str]) -> list[Database]:
    """Load each file with cantools (strict: overlapping signals are errors); `DatabaseError` names the file."""
    databases: list[Database] = []
    for path in paths:
        try:
            loaded = cantools.database.load_file(str(path), strict=True)
        except FileNotFoundError:
            raise DatabaseError(f"CAN database {path} does not exist") from None
        except Exception as exc:  # cantools raises ParseError, UnsupportedDatabaseFormatError, ValueError...
            raise DatabaseError(f"cannot load CAN database {path}: {exc}") from exc
        if not isinstance(loaded, Database):
            raise DatabaseError(f"{path} is a diagnostics database (CDD), not a CAN database")
        databases.append(loaded)
    return databases


# --- line protocol pieces, escaped by the core serializer so the rules live in one place -----------------


def _lp_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    line = format_point(Point(measurement, dict(tags), {"_": 0}))
    return line[: -len(" _=0i")]


def _lp_field_key(name: str) -> str:
    return format_point(Point("m", {}, {name: 0}))[2:-3]


def _lp_string(text: str) -> str:
    return format_point(Point("m", {}, {"f": text}))[4:]


def _braces(text: str) -> str:
    """Escape literal text for an f-string."""
    return text.replace("{", "{{").replace("}", "}}")


# --- compiling ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Field:
    """One output field of a signal: its line-protocol key and the code expression of its value."""

    key: str  # escaped field key
    expr: str  # f-string part producing the value text
    sort: str  # unescaped name, for ordering
    finite_check: str | None = None  # variable holding an IEEE float that may be NaN/Inf


@dataclass(slots=True)
class _Ctx:
    message: Message
    mapping: MessageMapping
    choices: ChoiceMode
    consts: dict[str, Any] = field(default_factory=dict)
    code: list[str] = field(default_factory=list)
    counter: int = 0
    memo_names: dict[tuple[Any, ...], str] = field(default_factory=dict)

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def const(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name


class _Unsupported(Exception):
    """The generator does not handle this message; cantools decodes it instead."""


def _extract_expr(signal: Signal, length_bytes: int) -> str:
    mask = (1 << signal.length) - 1
    if signal.byte_order == "little_endian":
        shift, word = signal.start, "le"
    else:
        msb = 8 * (signal.start // 8) + 7 - signal.start % 8  # sawtooth → linear, bit 0 = MSB of byte 0
        shift, word = 8 * length_bytes - msb - signal.length, "be"
    if shift < 0 or signal.start < 0:
        raise _Unsupported(f"signal {signal.name} lies outside the message")
    return f"(({word} >> {shift}) & {mask:#x})" if shift else f"({word} & {mask:#x})"


def _numeric_expr(conversion: Any, raw: str) -> tuple[str, bool]:
    """(expression of the scaled number, is it an int) — the very arithmetic cantools does."""
    inner = conversion._conversion if isinstance(conversion, NamedSignalConversion) else conversion
    if isinstance(inner, IdentityConversion):
        return raw, not inner.is_float
    if isinstance(inner, LinearIntegerConversion):
        return f"({raw} * {inner.scale!r} + {inner.offset!r})", True
    if isinstance(inner, LinearConversion):
        return f"({raw} * {inner.scale!r} + {inner.offset!r})", False
    raise _Unsupported(f"conversion {type(inner).__name__}")


INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _integer_suffix(signal: Signal) -> str:
    """The line-protocol type of an integer signal, fixed for all its values so the field keeps one type.

    ``i`` when every value it can take fits int64; ``u`` when they are all >= 0 and fit uint64 but not all
    int64 (an unsigned 64-bit signal: 2**63 and up is not a valid ``i``); '' when no one type holds them all.
    """
    conversion = signal.conversion
    inner = conversion._conversion if isinstance(conversion, NamedSignalConversion) else conversion
    if signal.is_signed:
        ends = (-(1 << (signal.length - 1)), (1 << (signal.length - 1)) - 1)
    else:
        ends = (0, (1 << signal.length) - 1)
    if isinstance(inner, LinearIntegerConversion):
        ends = (ends[0] * inner.scale + inner.offset, ends[1] * inner.scale + inner.offset)
    low, high = min(ends), max(ends)
    if low >= INT64_MIN and high <= INT64_MAX:
        return "i"
    if low >= 0 and high <= UINT64_MAX:
        return "u"
    return ""


MEMO_MAX_BITS = 16  # signals this narrow memoize their formatted value: at most 65,536 entries per conversion


def _memo_for(ctx: _Ctx, signal: Signal, numeric_is_int: bool, presigned: bool, suffix: str) -> str:
    """A shared dict raw bits → formatted value, filled on first sight with cantools' own conversion."""
    conversion = signal.conversion
    inner = conversion._conversion if isinstance(conversion, NamedSignalConversion) else conversion
    identity = (signal.length, signal.is_signed, presigned, type(inner).__name__, repr(inner.scale), repr(inner.offset))
    memo_name = ctx.memo_names.get(identity)
    if memo_name is not None:
        return memo_name
    memo: dict[int, str] = {}
    sign_bit, wrap = 1 << (signal.length - 1), 1 << signal.length
    signed = signal.is_signed and not presigned
    to_scaled = inner.raw_to_scaled

    def miss(bits: int) -> str:
        raw = bits - wrap if signed and bits & sign_bit else bits
        value = to_scaled(raw, False)
        text = f"{value}{suffix}" if numeric_is_int else repr(value)
        memo[bits] = text
        return text

    memo_name = ctx.const("memo", memo)
    ctx.consts[memo_name + "_miss"] = miss
    ctx.memo_names[identity] = memo_name
    return memo_name


def _emit_signal(
    ctx: _Ctx, signal: Signal, indent: str, is_mux: bool, n: int, extracted: bool
) -> tuple[list[_Field], str | None]:
    """Emit the code computing one signal; return its output fields and, for a multiplexer, its selector.

    `extracted`: ``r<n>`` already holds the raw value, sign-extended (or the float), from a struct unpack.
    """
    var, raw, label_var, text = f"v{n}", f"r{n}", f"c{n}", f"s{n}"
    code = ctx.code
    if not extracted:
        code.append(f"{indent}{raw} = {_extract_expr(signal, ctx.message.length)}")
    conversion = signal.conversion
    name = ctx.mapping.rename.get(signal.name, signal.name)
    key = _braces(_lp_field_key(name))
    if signal.is_float and (signal.length not in (32, 64) or conversion.choices):
        raise _Unsupported(f"float signal {signal.name} of {signal.length} bits")
    numeric, is_int = _numeric_expr(conversion, raw)
    suffix = _integer_suffix(signal) if is_int else ""
    if is_int and not suffix:
        raise _Unsupported(f"integer signal {signal.name} takes values no single int64 or uint64 type holds")
    labelled = bool(conversion.choices) and ctx.choices in ("string", "both")
    if not is_mux and not signal.is_float and not labelled and signal.length <= MEMO_MAX_BITS:
        memo = _memo_for(ctx, signal, is_int, extracted, suffix)
        code.append(f"{indent}{text} = {memo}.get({raw})")
        code.append(f"{indent}if {text} is None:")
        code.append(f"{indent}    {text} = {memo}_miss({raw})")
        return [_Field(key, f"{{{text}}}", name)], None
    if signal.is_float and not extracted:
        unpack = ctx.const("unpack", struct.Struct("<f" if signal.length == 32 else "<d").unpack)
        code.append(f"{indent}{raw} = {unpack}({raw}.to_bytes({signal.length // 8}, 'little'))[0]")
    elif signal.is_signed and not extracted:
        code.append(f"{indent}{raw} -= ({raw} & {1 << (signal.length - 1):#x}) << 1")
    selector = None
    if is_mux:
        selector = f"sel{n}"
        if conversion.choices:
            table = ctx.const("mux_choices", frozenset(int(k) for k in conversion.choices))
            code.append(f"{indent}{selector} = {raw} if {raw} in {table} else int({numeric})")
        else:
            code.append(f"{indent}{selector} = int({numeric})")
    fields: list[_Field] = []
    number_text = suffix
    number_fmt = "" if is_int else "!r"
    if labelled:
        labels = ctx.const("labels", {int(k): _lp_string(str(v)) for k, v in (conversion.choices or {}).items()})
        quote = ctx.const("quote", _lp_string)
        code.append(f"{indent}{label_var} = {labels}.get({raw})")
        if ctx.choices == "string":
            # Outside the table: the number, as a string too, so the field keeps one type in InfluxDB.
            code.append(f"{indent}if {label_var} is None:")
            code.append(f"{indent}    {label_var} = {quote}(str({numeric}))")
            if signal.length <= MEMO_MAX_BITS:
                code.append(f"{indent}    {labels}[{raw}] = {label_var}")
            fields.append(_Field(key, f"{{{label_var}}}", name))
        else:
            code.append(f"{indent}{var} = {numeric}")
            code.append(f"{indent}if {label_var} is None:")
            code.append(f"{indent}    {label_var} = {quote}(str({var}))")
            fields.append(_Field(key, f"{{{var}{number_fmt}}}{number_text}", name))
            fields.append(_Field(_braces(_lp_field_key(name + "_label")), f"{{{label_var}}}", name + "_label"))
        return fields, selector
    code.append(f"{indent}{var} = {numeric}")
    finite = var if signal.is_float else None
    fields.append(_Field(key, f"{{{var}{number_fmt}}}{number_text}", name, finite))
    return fields, selector


def _selected(ctx: _Ctx, name: str) -> bool:
    keep = ctx.mapping.signals
    return (keep is None or name in keep) and name not in ctx.mapping.exclude


def _emit_return(ctx: _Ctx, fields: list[tuple[Signal, _Field]], indent: str, tags: dict[str, str]) -> None:
    default = ctx.mapping.measurement or ctx.message.name
    groups: dict[str, list[_Field]] = {}
    for signal, fld in fields:
        measurement = ctx.mapping.signal_measurements.get(signal.name, default)
        groups.setdefault(measurement, []).append(fld)
    code = ctx.code
    parts: list[str] = []
    dynamic = False
    for measurement in sorted(groups):
        prefix = _lp_prefix(measurement, tags)
        flds = sorted(groups[measurement], key=lambda f: f.sort)
        if any(f.finite_check for f in flds):
            dynamic = True
            var = f"p{len(parts)}"
            items = ", ".join(
                "f"
                + repr(f"{f.key}={f.expr}")
                + (f" if {f.finite_check} - {f.finite_check} == 0 else None" if f.finite_check else "")
                for f in flds
            )
            code.append(f"{indent}{var} = [x for x in ({items},) if x is not None]")
            code.append(f"{indent}{var} = {prefix!r} + ' ' + ','.join({var}) + f' {{t}}000' if {var} else ''")
            parts.append(var)
        else:
            body = ",".join(f"{f.key}={f.expr}" for f in flds)
            parts.append("f" + repr(_braces(prefix) + " " + body + " {t}000"))
    if not parts:
        code.append(f"{indent}return ''")
    elif len(parts) == 1:
        code.append(f"{indent}return {parts[0]}")
    elif dynamic:
        code.append(f"{indent}return '\\n'.join(x for x in ({', '.join(parts)},) if x)")
    else:
        code.append(f"{indent}return {' + chr(10) + '.join(parts)}")


_STRUCT_CODES = {(8, False): "B", (8, True): "b", (16, False): "H", (16, True): "h",
                 (32, False): "I", (32, True): "i", (64, False): "Q", (64, True): "q"}  # fmt: skip


def _aligned_bytes(signal: Signal) -> int | None:
    """First byte of a byte-aligned 8/16/32/64-bit signal (struct can read it), else None."""
    if signal.length not in (8, 16, 32, 64) or (signal.is_float and signal.length == 8):
        return None
    if signal.byte_order == "little_endian":
        return signal.start // 8 if signal.start % 8 == 0 else None
    return signal.start // 8 if signal.start % 8 == 7 else None


def _emit_struct_unpacks(ctx: _Ctx, signals: list[Signal], ids: dict[str, int], indent: str) -> set[str]:
    """Read the byte-aligned signals of one tree level with one struct call per byte order."""
    done: set[str] = set()
    for order, prefix in (("little_endian", "<"), ("big_endian", ">")):
        chosen: list[tuple[int, Signal]] = []
        used: set[int] = set()
        for signal in signals:
            first = _aligned_bytes(signal) if signal.byte_order == order else None
            if first is None:
                continue
            span = set(range(first, first + signal.length // 8))
            if span & used or first + signal.length // 8 > ctx.message.length:
                continue
            used |= span
            chosen.append((first, signal))
        if not chosen:
            continue
        chosen.sort(key=lambda item: item[0])
        fmt, position = prefix, 0
        for first, signal in chosen:
            fmt += "x" * (first - position)
            fmt += (
                ("f" if signal.length == 32 else "d")
                if signal.is_float
                else _STRUCT_CODES[(signal.length, signal.is_signed)]
            )
            position = first + signal.length // 8
        unpack = ctx.const("struct", struct.Struct(fmt).unpack_from)
        targets = ", ".join(f"r{ids[signal.name]}" for _, signal in chosen)
        ctx.code.append(f"{indent}{targets}, = {unpack}(data)")
        done.update(signal.name for _, signal in chosen)
    return done


def _emit_node(
    ctx: _Ctx,
    tree: Sequence[Any],
    indent: str,
    fields: list[tuple[Signal, _Field]],
    chain: list[str],
    tags: dict[str, str],
    mux_tag: str,
) -> None:
    message = ctx.message
    plain = [node for node in tree if isinstance(node, str)]
    muxes = [node for node in tree if isinstance(node, dict)]
    if len(muxes) > 1 or any(len(node) != 1 for node in muxes):
        raise _Unsupported("several multiplexers at one level")
    fields = list(fields)
    level = [message.get_signal_by_name(name) for name in plain]
    if muxes:
        level.append(message.get_signal_by_name(next(iter(muxes[0]))))
    ids = {signal.name: ctx.next_id() for signal in level}
    extracted = _emit_struct_unpacks(ctx, level, ids, indent)
    for name in plain:
        signal = message.get_signal_by_name(name)
        produced, _ = _emit_signal(ctx, signal, indent, False, ids[name], name in extracted)
        if _selected(ctx, name):
            fields.extend((signal, f) for f in produced)
    if not muxes:
        branch_tags = dict(tags)
        if chain:
            branch_tags[mux_tag] = "/".join(chain)
        _emit_return(ctx, fields, indent, branch_tags)
        return
    ((mux_name, branches),) = muxes[0].items()
    mux_signal = message.get_signal_by_name(mux_name)
    produced, selector = _emit_signal(ctx, mux_signal, indent, True, ids[mux_name], mux_name in extracted)
    if _selected(ctx, mux_name):
        fields.extend((mux_signal, f) for f in produced)
    keyword = "if"
    for value, subtree in branches.items():
        ctx.code.append(f"{indent}{keyword} {selector} == {int(value)}:")
        _emit_node(ctx, subtree, indent + "    ", fields, [*chain, str(int(value))], tags, mux_tag)
        keyword = "elif"
    known = ctx.const("known", sorted(int(v) for v in branches))
    ctx.code.append(
        f"{indent}raise DecodeFailure(f'{message.name}: multiplexer {mux_name} = {{{selector}}} "
        f"is none of {{{known}}}')"
    )


def _compile_message(
    message: Message,
    *,
    mapping: MessageMapping,
    choices: ChoiceMode,
    tags: dict[str, str],
    mux_tag: str,
) -> DecodeFn:
    ctx = _Ctx(message, mapping, choices)
    length = message.length
    ctx.code.append("def decode(data, ts):")
    ctx.code.append("    t = round(ts * 1000000)")
    ctx.code.append(f"    if len(data) != {length}:")
    ctx.code.append(f"        if len(data) < {length}:")
    ctx.code.append(
        f"            raise DecodeFailure(f'{message.name}: {{len(data)}} data bytes, the database says {length}')"
    )
    ctx.code.append(f"        data = data[:{length}]")
    header = len(ctx.code)
    _emit_node(ctx, message.signal_tree, "    ", [], [], tags, mux_tag)
    body = "\n".join(ctx.code[header:])
    # The whole payload as one int, only when some signal is not byte-aligned (struct reads the others).
    if "(le >>" in body or "(le &" in body:
        ctx.code.insert(header, "    le = from_bytes(data, 'little')")
    if "(be >>" in body or "(be &" in body:
        ctx.code.insert(header, "    be = from_bytes(data, 'big')")
    source = "\n".join(ctx.code) + "\n"
    namespace: dict[str, Any] = {"from_bytes": int.from_bytes, "DecodeFailure": DecodeFailure, **ctx.consts}
    exec(compile(source, f"<can decoder {message.name}>", "exec"), namespace)
    function: DecodeFn = namespace["decode"]
    function.__doc__ = source  # the generated code, for whoever debugs it
    return function


def _fallback_decoder(
    message: Message,
    *,
    mapping: MessageMapping,
    choices: ChoiceMode,
    tags: dict[str, str],
    mux_tag: str,
) -> DecodeFn:
    """Decode with cantools and format the result: slower, for what the generator does not compile."""
    default = mapping.measurement or message.name
    multiplexers = [s.name for s in message.signals if s.is_multiplexer]
    unsigned = {s.name for s in message.signals if not s.is_float and _integer_suffix(s) == "u"}

    def decode(data: bytes, ts: float) -> str:
        try:
            values: Any = message.decode(data, decode_choices=choices != "number")
        except Exception as exc:
            raise DecodeFailure(f"{message.name}: {exc}") from exc
        line_tags = dict(tags)
        chain = [str(int(_number(message, name, values[name]))) for name in multiplexers if name in values]
        if chain:
            line_tags[mux_tag] = "/".join(chain)
        groups: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            if not ((mapping.signals is None or name in mapping.signals) and name not in mapping.exclude):
                continue
            out = mapping.rename.get(name, name)
            target = groups.setdefault(mapping.signal_measurements.get(name, default), {})
            if isinstance(value, int | float) and not isinstance(value, bool):
                if isinstance(value, float) and not math.isfinite(value):
                    continue
                target[out] = UInt(value) if isinstance(value, int) and name in unsigned else value
            else:
                target[out] = str(value)
                if choices == "both":
                    target[out] = _number(message, name, value)
                    target[out + "_label"] = str(value)
        t = round(ts * 1_000_000) * 1000
        return "\n".join(format_point(Point(m, line_tags, f, t)) for m, f in sorted(groups.items()) if f)

    return decode


def _number(message: Message, name: str, value: Any) -> float | int:
    if isinstance(value, int | float):
        return value
    signal = message.get_signal_by_name(name)
    raw = signal.conversion.choice_to_number(str(value))
    inner = signal.conversion._conversion if isinstance(signal.conversion, NamedSignalConversion) else None
    return inner.raw_to_scaled(raw) if inner is not None else raw  # type: ignore[return-value]


@dataclass(slots=True)
class BusDecoder:
    """The compiled decoders of one bus: frame key → function(data, timestamp_s) → line(s) or ``''``."""

    bus: str
    functions: dict[int, DecodeFn]
    messages: dict[int, Message]
    fallback: frozenset[int] = frozenset()  # keys decoded through cantools

    def decode_line(self, key: int, data: bytes, timestamp_s: float) -> str:
        """Decode one frame; `DecodeFailure` if its id is unknown or its data does not fit."""
        function = self.functions.get(key)
        if function is None:
            raise DecodeFailure(f"bus {self.bus}: no message with id {describe_key(key)} in the databases")
        return function(data, timestamp_s)


def compile_bus(
    databases: Sequence[Database],
    *,
    vehicle: str,
    bus: str,
    mapping: Mapping[str, MessageMapping] | None = None,
    choices: ChoiceMode = "string",
    mux_tag: str = "mux",
    strict_mapping: bool = False,
) -> BusDecoder:
    """Compile every message of `databases` for one bus.

    Mapping entries for messages these databases do not hold are ignored (another bus may hold them) unless
    `strict_mapping`; a mapping naming a signal its message lacks is a `MappingError`.
    """
    mapping = dict(mapping or {})
    tags = {"vehicle": vehicle, "bus": bus}
    try:
        _lp_prefix("m", {**tags, mux_tag: "0"})
    except LineProtocolError as exc:
        raise MappingError(f"vehicle {vehicle!r}, bus {bus!r} or mux tag {mux_tag!r}: {exc}") from exc
    functions: dict[int, DecodeFn] = {}
    messages: dict[int, Message] = {}
    fallback: set[int] = set()
    names: set[str] = set()
    for database in databases:
        for message in database.messages:
            key = frame_key(message.frame_id, message.is_extended_frame)
            if key in messages:
                raise DatabaseError(
                    f"bus {bus}: id {describe_key(key)} is defined twice ({messages[key].name} and {message.name})"
                )
            names.add(message.name)
            message_mapping = mapping.get(message.name, MessageMapping())
            _check_mapping(message, message_mapping)
            options = {"mapping": message_mapping, "choices": choices, "tags": tags, "mux_tag": mux_tag}
            try:
                if message.is_container:
                    raise _Unsupported("container message")
                functions[key] = _compile_message(message, **options)  # type: ignore[arg-type]
            except (_Unsupported, SyntaxError):  # SyntaxError: a name the generated code cannot quote
                functions[key] = _fallback_decoder(message, **options)  # type: ignore[arg-type]
                fallback.add(key)
            except LineProtocolError as exc:
                raise MappingError(f"message {message.name}: {exc}") from exc
            messages[key] = message
    if strict_mapping:
        missing = sorted(set(mapping) - names)
        if missing:
            raise MappingError(f"the mapping names messages no database defines: {', '.join(missing)}")
    return BusDecoder(bus, functions, messages, frozenset(fallback))


def _check_mapping(message: Message, mapping: MessageMapping) -> None:
    known = {signal.name for signal in message.signals}
    named = set(mapping.signals or ()) | set(mapping.exclude) | set(mapping.rename) | set(mapping.signal_measurements)
    unknown = sorted(named - known)
    if unknown:
        raise MappingError(f"mapping of message {message.name} names unknown signals: {', '.join(unknown)}")


def decode_frames(
    decoder: BusDecoder,
    frames: Iterable[Frame],
    lines: list[str],
    unknown: dict[int, int],
    failed: dict[int, int],
) -> None:
    """Decode `frames`, appending their lines to `lines`; count unknown ids and failures per frame key.

    Never raises for a bad frame: the counters say what happened (remote and error frames are skipped).
    """
    get = decoder.functions.get
    append = lines.append
    for ts, key, flags, data in frames:
        function = get(key)
        if function is None or flags & NOT_DECODABLE:
            if not flags & NOT_DECODABLE:
                unknown[key] = unknown.get(key, 0) + 1
            continue
        try:
            line = function(data, ts)
        except Exception:  # DecodeFailure, or anything a malformed frame provokes: counted, never fatal
            failed[key] = failed.get(key, 0) + 1
            continue
        if line:
            append(line)
