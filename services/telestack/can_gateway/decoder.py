"""CAN frames → InfluxDB line protocol, through decoders compiled once per frame id from cantools databases.

cantools parses the DBC/KCD/ARXML files and defines the meaning of every bit; decoding frame after frame through
``Database.decode_message`` is exact but slow (a dict, a bitstruct call and a conversion object per signal).
`compile_bus` therefore turns each message into a small Python function, generated from its signals, that
returns the finished line(s) as one f-string. Each value's text comes from a lookup table built with cantools'
own conversion (``raw * scale + offset``, value tables, signedness), so the values are those
``decode_message`` returns, bit for bit: a signal lying in one byte is ``table[byte]`` (a tuple byte value →
text, shared by every alike signal, so it stays in the CPU caches); a wider one extracts its bits from the
payload read as one integer and looks them up in a table filled as values are first seen; IEEE floats and
signals wider than 16 bits are computed inline. A multiplexed message looks its selector's value up in a table
that gives the function of that branch (simple and extended multiplexing). Messages the generator does not
handle (container PDUs, several multiplexers side by side) fall back to cantools itself, so every message
decodes. `tests/can_gateway/test_decoder_opendbc.py` checks every message of 115 real-world DBC files against
cantools.

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
from cantools.database.namedsignalvalue import NamedSignalValue

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

TABLE_BITS = 8  # signals this narrow read their text from a tuple built at compile time (256 entries at most)
LIST_BITS = 14  # up to this width, from a list filled on first sight (16,384 entries at most), then a dict
MEMO_MAX_BITS = 16  # up to this width, from a dict filled on first sight (65,536 entries at most)


class _Memo(dict[int, Any]):
    """Raw bits → value, computed on first sight by cantools' own conversion and kept."""

    __slots__ = ("compute",)

    def __init__(self, compute: Callable[[int], Any]) -> None:
        super().__init__()
        self.compute = compute

    def __missing__(self, bits: int) -> Any:
        value = self[bits] = self.compute(bits)
        return value


@dataclass(slots=True)
class _Field:
    """One output field of a signal: its line-protocol key and the code expression of its value."""

    key: str  # escaped field key
    expr: str  # f-string part producing the value text
    sort: str  # unescaped name, for ordering
    finite_check: str | None = None  # variable holding an IEEE float that may be NaN/Inf
    # A signal lying in one byte: its value text is ``table[that byte's value]`` (`expr` is then '').
    byte: int | None = None
    table: str = ""


@dataclass(slots=True)
class _Ctx:
    message: Message
    mapping: MessageMapping
    choices: ChoiceMode
    tags: dict[str, str]
    mux_tag: str
    tables: dict[tuple[Any, ...], Any]  # shared by the messages of a bus: identity → table
    consts: dict[str, Any] = field(default_factory=dict)
    const_names: dict[int, str] = field(default_factory=dict)  # id(table) → its name in this message's code
    functions: list[str] = field(default_factory=list)  # source of every generated function
    # Dispatch tables to fill once the functions exist: name → builder(namespace of the generated code).
    dispatch: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    words: set[str] = field(default_factory=set)  # payload integers (`le`, `be`) some function reads
    counter: int = 0

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    def const(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def table(self, identity: tuple[Any, ...], bits: int, compute: Callable[[int], Any]) -> str:
        """Name of the lookup raw bits → `compute(bits)`: a tuple for narrow signals, else a `_Memo` filled on
        first sight (multiplexer selectors wider than a byte)."""
        table = self.tables.get(identity)
        if table is None:
            table = tuple(compute(b) for b in range(1 << bits)) if bits <= TABLE_BITS else _Memo(compute)
            self.tables[identity] = table
        return self.name_of(table)

    def name_of(self, value: Any) -> str:
        name = self.const_names.get(id(value))
        if name is None:
            name = self.const_names[id(value)] = self.const("t", value)
        return name

    def merged(self, fields: list[_Field], index: str) -> str:
        """Expression of the text of `fields` (all in byte `index`): ``k1=v1,k2=v2``, one lookup of that byte.

        A list filled as byte values are first seen (a frame's few flags and counters take few values), shared by
        the messages of the bus with the same fields and tables.
        """
        parts = [(field.key.replace("{{", "{").replace("}}", "}"), self.consts[field.table]) for field in fields]
        identity = ("merged", tuple((key, id(table)) for key, table in parts))
        entry = self.tables.get(identity)
        if entry is None:
            store: list[str | None] = [None] * 256

            def fill(byte: int) -> str:
                value = store[byte] = ",".join(f"{key}={table[byte]}" for key, table in parts)
                return value

            entry = self.tables[identity] = (store, fill)
        store, fill = entry
        return f"({self.name_of(store)}[{index}] or {self.name_of(fill)}({index}))"

    def lookup(self, identity: tuple[Any, ...], bits: int, compute: Callable[[int], Any], index: str) -> str:
        """Expression of ``compute(index)`` for `index` of `bits` bits, through a table shared by alike signals.

        Narrow: a tuple built now. Wider: a list (a dict past `LIST_BITS`) filled as values are first seen, read
        with a walrus so the bits are extracted once; a list beats a dict subclass's ``__missing__`` ~2x there.
        """
        if bits <= TABLE_BITS:
            return f"{self.table(identity, bits, compute)}[{index}]"
        entry = self.tables.get(("lazy", identity))
        if entry is None:
            store: Any = [None] * (1 << bits) if bits <= LIST_BITS else {}

            def fill(raw: int) -> Any:
                value = store[raw] = compute(raw)
                return value

            entry = self.tables[("lazy", identity)] = (store, fill)
        store, fill = entry
        get = f"[(w := {index})]" if isinstance(store, list) else f".get(w := {index})"
        return f"({self.name_of(store)}{get} or {self.name_of(fill)}(w))"


class _Unsupported(Exception):
    """The generator does not handle this message; cantools decodes it instead."""


def _extract_expr(ctx: _Ctx, signal: Signal) -> str:
    """Expression of the signal's raw bits (unsigned) from the payload read as one integer."""
    mask = (1 << signal.length) - 1
    if signal.byte_order == "little_endian":
        shift, word = signal.start, "le"
    else:
        msb = 8 * (signal.start // 8) + 7 - signal.start % 8  # sawtooth → linear, bit 0 = MSB of byte 0
        shift, word = 8 * ctx.message.length - msb - signal.length, "be"
    if shift < 0 or signal.start < 0:
        raise _Unsupported(f"signal {signal.name} lies outside the message")
    ctx.words.add(word)
    return f"(({word} >> {shift}) & {mask:#x})" if shift else f"({word} & {mask:#x})"


def _inner(conversion: Any) -> Any:
    return conversion._conversion if isinstance(conversion, NamedSignalConversion) else conversion


def _numeric_expr(conversion: Any, raw: str) -> tuple[str, bool]:
    """(expression of the scaled number, is it an int) — the very arithmetic cantools does."""
    inner = _inner(conversion)
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
    inner = _inner(signal.conversion)
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


def _raw_of(signal: Signal) -> Callable[[int], int]:
    """Raw bits → the raw value cantools sees (sign-extended for a signed signal)."""
    sign_bit = 1 << (signal.length - 1)
    if not signal.is_signed:
        return int
    return lambda bits: (bits ^ sign_bit) - sign_bit


def _identity(kind: str, signal: Signal, *extra: Any) -> tuple[Any, ...]:
    """What a lookup table depends on, so signals alike share one."""
    conversion = signal.conversion
    inner = _inner(conversion)
    choices = tuple(sorted((int(k), str(v)) for k, v in (conversion.choices or {}).items()))
    scaling = (type(inner).__name__, repr(getattr(inner, "scale", 1)), repr(getattr(inner, "offset", 0)))
    return (kind, signal.length, signal.is_signed, scaling, choices, *extra)


def _number_text(signal: Signal, is_int: bool, suffix: str) -> tuple[Callable[[int], str], tuple[Any, ...]]:
    """Raw bits → the scaled value as line-protocol text (cantools' own conversion), and what it depends on."""
    raw_of, to_scaled = _raw_of(signal), _inner(signal.conversion).raw_to_scaled

    def text(bits: int) -> str:
        value = to_scaled(raw_of(bits), False)
        return f"{value}{suffix}" if is_int else repr(value)

    return text, _identity("number", signal, is_int, suffix)


def _label_text(signal: Signal) -> tuple[Callable[[int], str], tuple[Any, ...]]:
    """Raw bits → the value-table label as a line-protocol string; outside the table, the number as a string
    (so the field keeps one type in InfluxDB)."""
    conversion = signal.conversion
    raw_of, to_scaled = _raw_of(signal), _inner(conversion).raw_to_scaled
    labels = {int(k): str(v) for k, v in (conversion.choices or {}).items()}

    def text(bits: int) -> str:
        raw = raw_of(bits)
        label = labels.get(raw)
        return _lp_string(label if label is not None else str(to_scaled(raw, False)))

    return text, _identity("label", signal)


def _in_byte(ctx: _Ctx, signal: Signal) -> tuple[int, int] | None:
    """(byte, shift) when the signal's bits all lie in one payload byte: its raw bits are
    ``(data[byte] >> shift) & mask``."""
    byte, bit = divmod(signal.start, 8)
    if signal.start < 0 or byte >= ctx.message.length:
        return None  # `_extract_expr` refuses it
    # Big-endian: `start` is the most significant bit.
    shift = bit if signal.byte_order == "little_endian" else bit - signal.length + 1
    if shift < 0 or shift + signal.length > 8:
        return None
    return byte, shift


def _selector_table(ctx: _Ctx, signal: Signal) -> tuple[str, Callable[[int], int]]:
    """Raw bits → the multiplexer value cantools selects on (``Message._get_mux_number``)."""
    conversion = signal.conversion
    raw_of = _raw_of(signal)
    decode_choices = ctx.choices != "number"  # as decode_message is called in this mode

    def compute(bits: int) -> int:
        value = conversion.raw_to_scaled(raw_of(bits), decode_choices)
        if isinstance(value, str | NamedSignalValue):
            return int(conversion.choice_to_number(str(value)))
        return int(value)

    return ctx.table(_identity("selector", signal, decode_choices), signal.length, compute), compute


def _of_byte(text: Callable[[int], str], shift: int, mask: int) -> Callable[[int], str]:
    """Byte value → `text` of the bits ``(byte >> shift) & mask``, one string object per distinct value."""
    values = [text(bits) for bits in range(mask + 1)]
    return lambda byte: values[(byte >> shift) & mask]


def _signal_fields(ctx: _Ctx, signal: Signal, code: list[str], indent: str) -> list[_Field]:
    """The output fields of one signal, as f-string parts; statements they need are appended to `code`."""
    conversion = signal.conversion
    name = ctx.mapping.rename.get(signal.name, signal.name)
    key = _braces(_lp_field_key(name))
    if signal.is_float:
        if signal.length not in (32, 64) or conversion.choices:
            raise _Unsupported(f"float signal {signal.name} of {signal.length} bits")
        n = ctx.next_id()
        unpack = ctx.const("unpack", struct.Struct("<f" if signal.length == 32 else "<d").unpack)
        bits = _extract_expr(ctx, signal)
        code.append(f"{indent}f{n} = {unpack}({bits}.to_bytes({signal.length // 8}, 'little'))[0]")
        code.append(f"{indent}v{n} = {_numeric_expr(conversion, f'f{n}')[0]}")
        return [_Field(key, f"{{v{n}!r}}", name, f"v{n}")]
    numeric_is_int = _numeric_expr(conversion, "x")[1]
    suffix = _integer_suffix(signal) if numeric_is_int else ""
    if numeric_is_int and not suffix:
        raise _Unsupported(f"integer signal {signal.name} takes values no single int64 or uint64 type holds")
    labelled = bool(conversion.choices) and ctx.choices in ("string", "both")
    label_key, label_name = key, name
    if ctx.choices == "both":
        label_key, label_name = _braces(_lp_field_key(name + "_label")), name + "_label"
    fields: list[_Field] = []
    place = _in_byte(ctx, signal)
    if place is not None:  # a table byte value → value text, shared by alike signals
        byte, shift = place
        mask = (1 << signal.length) - 1
        outputs = []
        if not labelled or ctx.choices == "both":
            outputs.append((key, name, *_number_text(signal, numeric_is_int, suffix)))
        if labelled:
            outputs.append((label_key, label_name, *_label_text(signal)))
        for fkey, fname, text, text_id in outputs:
            table = ctx.table(("byte", shift, text_id), 8, _of_byte(text, shift, mask))
            fields.append(_Field(fkey, "", fname, byte=byte, table=table))
        return fields
    bits = _extract_expr(ctx, signal)
    if signal.length <= MEMO_MAX_BITS:
        if labelled and ctx.choices == "both":  # the bits feed two lookups: extract them once
            n = ctx.next_id()
            code.append(f"{indent}w{n} = {bits}")
            bits = f"w{n}"
        if not labelled or ctx.choices == "both":
            text, text_id = _number_text(signal, numeric_is_int, suffix)
            fields.append(_Field(key, f"{{{ctx.lookup(text_id, signal.length, text, bits)}}}", name))
        if labelled:
            text, text_id = _label_text(signal)
            fields.append(_Field(label_key, f"{{{ctx.lookup(text_id, signal.length, text, bits)}}}", label_name))
        return fields
    # A wide signal: computed inline, each value is seldom seen twice.
    n = ctx.next_id()
    raw = f"r{n}"
    code.append(f"{indent}{raw} = {bits}")
    if signal.is_signed:
        sign = 1 << (signal.length - 1)
        code.append(f"{indent}{raw} = ({raw} ^ {sign:#x}) - {sign:#x}")
    numeric, _ = _numeric_expr(conversion, raw)
    number = f"{{{numeric}}}{suffix}" if numeric_is_int else f"{{{numeric}!r}}"
    if labelled:
        labels = ctx.const("labels", {int(k): _lp_string(str(v)) for k, v in (conversion.choices or {}).items()})
        quote = ctx.const("quote", _lp_string)
        code.append(f"{indent}c{n} = {labels}.get({raw})")
        code.append(f"{indent}if c{n} is None:")
        code.append(f"{indent}    c{n} = {quote}(str({numeric}))")
        if ctx.choices == "both":
            fields.append(_Field(key, number, name))
        fields.append(_Field(label_key, f"{{c{n}}}", label_name))
        return fields
    return [_Field(key, number, name)]


def _selected(ctx: _Ctx, name: str) -> bool:
    keep = ctx.mapping.signals
    return (keep is None or name in keep) and name not in ctx.mapping.exclude


def _pieces(ctx: _Ctx, fields: list[_Field], unpacked: bool) -> list[tuple[str, str | None]]:
    """The f-string parts writing `fields`, ordered by name, and the float each must check is finite.

    A signal lying in one byte is one lookup of that byte, ``b<n>`` when the payload is `unpacked` into
    one variable per byte, else ``data[<n>]``. Several lying in the same byte are one lookup too, of the text
    of all of them (``a=1,b=2``), written where the first of them by name goes (field order means nothing in
    line protocol).
    """
    in_byte: dict[int, list[_Field]] = {}
    for fld in fields:
        if fld.byte is not None:
            in_byte.setdefault(fld.byte, []).append(fld)
    pieces = []
    for fld in sorted(fields, key=lambda f: f.sort):
        if fld.byte is None:
            pieces.append((f"{fld.key}={fld.expr}", fld.finite_check))
            continue
        together = in_byte.pop(fld.byte, None)
        if together is None:  # written with the first of its byte
            continue
        index = f"b{fld.byte}" if unpacked else f"data[{fld.byte}]"
        if len(together) == 1:
            pieces.append((f"{fld.key}={{{fld.table}[{index}]}}", None))
        else:
            pieces.append((f"{{{ctx.merged(sorted(together, key=lambda f: f.sort), index)}}}", None))
    return pieces


def _emit_return(
    ctx: _Ctx, fields: list[tuple[Signal, _Field]], code: list[str], indent: str, tags: dict[str, str]
) -> None:
    default = ctx.mapping.measurement or ctx.message.name
    groups: dict[str, list[_Field]] = {}
    for signal, fld in fields:
        measurement = ctx.mapping.signal_measurements.get(signal.name, default)
        groups.setdefault(measurement, []).append(fld)
    # The payload as one variable per byte when most bytes are read (cheaper than ``data[n]`` each time).
    in_byte = {f.byte for _, f in fields if f.byte is not None}
    reads = sum(1 for _, f in fields if f.byte is not None)
    unpacked = reads >= 3 and 2 * reads >= ctx.message.length
    if unpacked:
        names = ", ".join(f"b{n}" if n in in_byte else "_" for n in range(ctx.message.length))
        code.append(f"{indent}{names}, = data" if ctx.message.length == 1 else f"{indent}{names} = data")
    parts: list[str] = []
    dynamic = False
    for measurement in sorted(groups):
        prefix = _lp_prefix(measurement, tags)
        pieces = _pieces(ctx, groups[measurement], unpacked)
        if any(check for _, check in pieces):
            dynamic = True
            var = f"p{len(parts)}"
            items = ", ".join(
                "f" + repr(piece) + (f" if {check} - {check} == 0 else None" if check else "")
                for piece, check in pieces
            )
            code.append(f"{indent}{var} = ({items},)")  # not in the comprehension: it may hold walruses
            code.append(f"{indent}{var} = [x for x in {var} if x is not None]")
            code.append(f"{indent}{var} = {prefix!r} + ' ' + ','.join({var}) + f' {{t}}000' if {var} else ''")
            parts.append(var)
        else:
            body = ",".join(piece for piece, _ in pieces)
            parts.append("f" + repr(_braces(prefix) + " " + body + " {t}000"))
    if not parts:
        code.append(f"{indent}return ''")
    elif len(parts) == 1:
        code.append(f"{indent}return {parts[0]}")
    elif dynamic:
        code.append(f"{indent}return '\\n'.join(x for x in ({', '.join(parts)},) if x)")
    else:
        code.append(f"{indent}return {' + chr(10) + '.join(parts)}")


def _emit_node(ctx: _Ctx, tree: Sequence[Any], path: list[Signal], chain: list[str]) -> str:
    """Generate the function decoding one node of the signal tree and return its name.

    The root is ``decode(data, ts)``; below a multiplexer, each of its values has a function
    ``(data, le, be, t)`` that decodes the signals of its branch and of every enclosing level (`path`), found
    through a dict by the selector's value: a frame runs only the code of its own branch.
    """
    message = ctx.message
    plain = [node for node in tree if isinstance(node, str)]
    muxes = [node for node in tree if isinstance(node, dict)]
    if len(muxes) > 1 or any(len(node) != 1 for node in muxes):
        raise _Unsupported("several multiplexers at one level")
    root = not chain and not path
    name = "decode" if root else f"node{ctx.next_id()}"
    indent = "    "
    code = [f"def {name}(data, ts):" if root else f"def {name}(data, le, be, t):"]
    if root:
        length = message.length
        code.append(f"    if len(data) != {length}:")
        code.append(f"        if len(data) < {length}:")
        failure = ctx.const("name", f"{message.name}: ")
        code.append(
            f"            raise DecodeFailure(f'{{{failure}}}{{len(data)}} data bytes, the database says {length}')"
        )
        code.append(f"        data = data[:{length}]")
        # round(ts * 1000000), twice as fast: a float literal spares the int → float conversion of each frame,
        # and the method the builtin calls spares its lookup (the same value: 1,000,000 random stamps compared)
        code.append("    t = (ts * 1e6).__round__()")
    header = len(code)
    level = [*path, *(message.get_signal_by_name(name) for name in plain)]
    if not muxes:
        fields: list[tuple[Signal, _Field]] = []
        for signal in level:
            produced = _signal_fields(ctx, signal, code, indent)
            if _selected(ctx, signal.name):
                fields.extend((signal, f) for f in produced)
        tags = dict(ctx.tags)
        if chain:
            tags[ctx.mux_tag] = "/".join(chain)
        _emit_return(ctx, fields, code, indent, tags)
    else:
        ((mux_name, branches),) = muxes[0].items()
        mux_signal = message.get_signal_by_name(mux_name)
        if mux_signal.is_float or mux_signal.length > MEMO_MAX_BITS:
            raise _Unsupported(f"multiplexer {mux_name} of {mux_signal.length} bits")
        selector, select = _selector_table(ctx, mux_signal)
        targets = {
            int(value): _emit_node(ctx, subtree, [*level, mux_signal], [*chain, str(int(value))])
            for value, subtree in branches.items()
        }
        known = ctx.const("name", f"{message.name}: multiplexer {mux_name} = ")
        place = _in_byte(ctx, mux_signal)
        if place is not None:  # one lookup of its byte gives the branch's function
            byte, shift = place
            mask = (1 << mux_signal.length) - 1
            bits = f"((data[{byte}] >> {shift}) & {mask:#x})"
            nodes = ctx.const("nodes", None)

            def by_byte(namespace: dict[str, Any]) -> tuple[Any, ...]:
                branch = [targets.get(select((value >> shift) & mask)) for value in range(256)]
                return tuple(namespace[name] if name is not None else None for name in branch)

            ctx.dispatch[nodes] = by_byte
            code.append(f"{indent}node = {nodes}[data[{byte}]]")
        else:
            bits = _extract_expr(ctx, mux_signal)
            nodes = ctx.const("nodes", None)

            def by_value(namespace: dict[str, Any]) -> dict[int, Any]:
                return {value: namespace[name] for value, name in targets.items()}

            ctx.dispatch[nodes] = by_value
            code.append(f"{indent}node = {nodes}.get({selector}[{bits}])")
        code.append(f"{indent}if node is None:")
        code.append(
            f"{indent}    raise DecodeFailure(f'{{{known}}}{{{selector}[{bits}]}} is none of {sorted(targets)}')"
        )
        words = ", ".join(word if word in ctx.words else "None" for word in ("le", "be"))
        code.append(f"{indent}return node(data, {words}, t)")
    if root:  # the payload as integers, read once per frame and only when some signal needs one
        if "be" in ctx.words:
            code.insert(header, "    be = from_bytes(data, 'big')")
        if "le" in ctx.words:
            code.insert(header, "    le = from_bytes(data, 'little')")
    ctx.functions.append("\n".join(code))
    return name


def _compile_message(
    message: Message,
    *,
    mapping: MessageMapping,
    choices: ChoiceMode,
    tags: dict[str, str],
    mux_tag: str,
    tables: dict[tuple[Any, ...], Any],
) -> DecodeFn:
    ctx = _Ctx(message, mapping, choices, tags, mux_tag, tables)
    _emit_node(ctx, message.signal_tree, [], [])
    source = "\n\n".join(ctx.functions) + "\n"
    namespace: dict[str, Any] = {"from_bytes": int.from_bytes, "DecodeFailure": DecodeFailure, **ctx.consts}
    exec(compile(source, f"<can decoder {message.name}>", "exec"), namespace)
    for name, build in ctx.dispatch.items():
        namespace[name] = build(namespace)
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
    tables: dict[tuple[Any, ...], Any] = {}  # lookups shared by alike signals of every message
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
                functions[key] = _compile_message(message, tables=tables, **options)  # type: ignore[arg-type]
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
