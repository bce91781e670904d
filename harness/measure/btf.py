"""Pure: the kernel's own type information (/sys/kernel/btf/vmlinux) -> struct sizes and member
offsets, so a reader of kernel memory needs no debug package and follows each kernel's layout.

Format: Documentation/bpf/btf.rst (header, then the type section, then the string section;
type ids count from 1 in the order of the type section).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC = 0xEB9F
# kind -> bytes after the 12-byte struct btf_type: fixed, per vlen item
_EXTRA = {1: (4, 0), 2: (0, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 7: (0, 0), 8: (0, 0),
          9: (0, 0), 10: (0, 0), 11: (0, 0), 12: (0, 0), 13: (0, 8), 14: (4, 0), 15: (0, 12), 16: (0, 0),
          17: (4, 0), 18: (0, 0), 19: (0, 12)}
PTR, ARRAY, STRUCT, UNION, ENUM = 2, 3, 4, 5, 6
_QUALIFIERS = {8, 9, 10, 11, 18}          # typedef, volatile, const, restrict, type tag: same layout


class BtfError(ValueError):
    pass


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    bit_offset: int


@dataclass(frozen=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int                       # size (int, struct, union, enum) or the referred type id
    members: tuple[Member, ...] = ()        # struct, union
    array: tuple[int, int] = (0, 0)         # array: element type id, elements
    values: tuple[tuple[str, int], ...] = ()  # enum


class Btf:
    def __init__(self, types: list[BtfType]):
        self.types = types                  # index = type id (0: void)
        self._by_name: dict[tuple[int, str], int] = {}
        for i, t in enumerate(types):
            if t.name:
                self._by_name.setdefault((t.kind, t.name), i)

    def struct(self, name: str) -> int:
        for kind in (STRUCT, UNION):
            if (kind, name) in self._by_name:
                return self._by_name[(kind, name)]
        raise BtfError(f"BTF: no struct {name}")

    def size(self, type_id: int) -> int:
        t = self._resolve(type_id)
        if t.kind == ARRAY:
            return self.size(t.array[0]) * t.array[1]
        if t.kind == PTR:
            return 8
        return t.size_or_type

    def _resolve(self, type_id: int) -> BtfType:
        t = self.types[type_id]
        while t.kind in _QUALIFIERS:
            t = self.types[t.size_or_type]
        return t

    def member(self, type_id: int, name: str) -> tuple[int, int]:
        """(byte offset, member type id) of `name` in a struct or union, looking into its
        anonymous members as C does."""
        for m in self._resolve(type_id).members:
            if m.name == name:
                return m.bit_offset // 8, m.type_id
            if not m.name and self._resolve(m.type_id).kind in (STRUCT, UNION):
                try:
                    off, tid = self.member(m.type_id, name)
                except BtfError:
                    continue
                return m.bit_offset // 8 + off, tid
        raise BtfError(f"BTF: no member {name} in {self._resolve(type_id).name or 'an anonymous type'}")

    def offset(self, struct_name: str, name: str) -> int:
        return self.member(self.struct(struct_name), name)[0]

    def has_member(self, struct_name: str, name: str) -> bool:
        try:
            self.offset(struct_name, name)
            return True
        except BtfError:
            return False

    def array_len(self, struct_name: str, name: str) -> int:
        t = self._resolve(self.member(self.struct(struct_name), name)[1])
        if t.kind != ARRAY:
            raise BtfError(f"BTF: {struct_name}.{name} is not an array")
        return t.array[1]

    def enum(self, name: str) -> dict[str, int]:
        tid = self._by_name.get((ENUM, name))
        if tid is None:
            raise BtfError(f"BTF: no enum {name}")
        return dict(self.types[tid].values)


def parse(data: bytes) -> Btf:
    if len(data) < 24:
        raise BtfError("BTF: too short")
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != MAGIC:
        raise BtfError(f"BTF: bad magic {magic:#x}")
    strings = data[hdr_len + str_off:hdr_len + str_off + str_len]

    def name(off: int) -> str:
        return strings[off:strings.index(b"\0", off)].decode()

    types: list[BtfType] = [BtfType(0, "void", 0)]
    at, end = hdr_len + type_off, hdr_len + type_off + type_len
    while at < end:
        name_off, info, sot = struct.unpack_from("<III", data, at)
        kind, vlen, kflag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        if kind not in _EXTRA:
            raise BtfError(f"BTF: unknown kind {kind}")
        fixed, per = _EXTRA[kind]
        body = at + 12
        members: tuple = ()
        array = (0, 0)
        values: tuple = ()
        if kind in (STRUCT, UNION):
            items = [struct.unpack_from("<III", data, body + 12 * i) for i in range(vlen)]
            members = tuple(Member(name(n), t, (o & 0xFFFFFF) if kflag else o) for n, t, o in items)
        elif kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", data, body)
            array = (elem, nelems)
        elif kind == ENUM:
            items = (struct.unpack_from("<Ii", data, body + 8 * i) for i in range(vlen))
            values = tuple((name(n), v) for n, v in items)
        types.append(BtfType(kind, name(name_off), sot, members, array, values))
        at = body + fixed + per * vlen
    return Btf(types)
