#!/usr/bin/env python3
"""Generate the C table of ordo's Avro schemas at build time.

usage: gen_schemas.py OUTPUT.c SCHEMA.avsc...

For each schema: its JSON text as written, its Parsing Canonical Form and
the CRC-64-AVRO (Rabin) fingerprint of that form, as the Avro
specification defines them ("Parsing Canonical Form for Schemas",
"Schema Fingerprints"). avro-c 1.11.1 computes neither, and doing it
here keeps the fingerprints out of hand-maintained source: change an
.avsc and the wire fingerprint follows. Standard library only.

The record name must be an ordo message type: CreateActivity becomes
ORDO_MSG_CREATE_ACTIVITY, so a schema without a type (or a misspelt one)
fails to compile rather than ship. schemas/previous/<Type>.v<N>.avsc are
versions that writers used before; they go to a second table, which the
decoder reads old messages with (decision 0024).
"""
import json
import re
import sys

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes",
              "string"}
# [ORDER]: the only attributes kept, in this order.
KEEP = ("name", "type", "fields", "symbols", "items", "values", "size")

EMPTY = 0xC15D213AA4D7A795


def _table():
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    return table


TABLE = _table()


def crc64_avro(data):
    fp = EMPTY
    for b in data:
        fp = (fp >> 8) ^ TABLE[(fp ^ b) & 0xFF]
    return fp


def fullname(name, namespace):
    if "." in name or not namespace:
        return name
    return namespace + "." + name


def canonical(schema, namespace=None):
    """Return the schema reduced to its canonical JSON value."""
    if isinstance(schema, str):
        # [FULLNAMES] applies to references to named types too.
        return schema if schema in PRIMITIVES else fullname(schema,
                                                            namespace)
    if isinstance(schema, list):
        return [canonical(s, namespace) for s in schema]
    t = schema["type"]
    if t not in ("record", "error", "enum", "fixed", "array", "map"):
        # [PRIMITIVES]: {"type": "long"} is "long"; a type object or a
        # name under "type" is that type.
        return canonical(t, namespace)
    out = {}
    if t in ("record", "error", "enum", "fixed"):
        name = fullname(schema["name"], schema.get("namespace", namespace))
        namespace = name.rpartition(".")[0] or None
        out["name"] = name
    out["type"] = "record" if t == "error" else t
    if t in ("record", "error"):
        out["fields"] = [{"name": f["name"],
                          "type": canonical(f["type"], namespace)}
                         for f in schema["fields"]]
    if t == "enum":
        out["symbols"] = list(schema["symbols"])
    if t == "array":
        out["items"] = canonical(schema["items"], namespace)
    if t == "map":
        out["values"] = canonical(schema["values"], namespace)
    if t == "fixed":
        out["size"] = int(schema["size"])  # [INTEGERS]
    return {k: out[k] for k in KEEP if k in out}


def parsing_canonical_form(schema):
    # [STRINGS] ensure_ascii=False writes characters, not escapes;
    # [WHITESPACE] no separators' spaces.
    return json.dumps(canonical(schema), separators=(",", ":"),
                      ensure_ascii=False)


def c_string(text):
    """A C string literal, one source line per input line, ASCII only."""
    lines = []
    for line in text.encode("utf-8").splitlines(keepends=True):
        s = ""
        for b in line:
            c = chr(b)
            if c in '"\\':
                s += "\\" + c
            elif c == "\n":
                s += "\\n"
            elif 32 <= b < 127:
                s += c
            else:
                s += "\\%03o" % b
        lines.append('"' + s + '"')
    return "\n            ".join(lines) if lines else '""'


def enum_name(record_name):
    return "ORDO_MSG_" + re.sub(r"(?<!^)(?=[A-Z])", "_", record_name).upper()


# schemas/previous/<Type>.v<N>.avsc: a version writers used before.
PREVIOUS = re.compile(r"(?:^|/)([A-Za-z]+)\.v([0-9]+)\.avsc$")


def schema_entry(out, indent, text, pcf, fp):
    out.write("%s.json = %s,\n" % (indent, c_string(text)))
    out.write("%s.pcf = %s,\n" % (indent, c_string(pcf)))
    out.write("%s.fingerprint = UINT64_C(0x%016x),\n" % (indent, fp))


def main(argv):
    out_path, inputs = argv[1], argv[2:]
    entries, previous = [], []
    for path in sorted(inputs):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        schema = json.loads(text)
        if schema.get("type") != "record" or schema.get("namespace") != "ordo":
            sys.exit("%s: not a record in namespace ordo" % path)
        pcf = parsing_canonical_form(schema)
        fp = crc64_avro(pcf.encode("utf-8"))
        m = PREVIOUS.search(path)
        if m:
            if m.group(1) != schema["name"]:
                sys.exit("%s: the record is named %s" % (path, schema["name"]))
            previous.append((enum_name(schema["name"]), int(m.group(2)),
                             text, pcf, fp))
        else:
            entries.append((enum_name(schema["name"]), text, pcf, fp))

    with open(out_path, "w", encoding="ascii") as out:
        out.write("/* Generated by schemas/gen_schemas.py from the .avsc files."
                  " Do not edit. */\n")
        out.write('#include "schemas_int.h"\n\n')
        out.write("const ordo__schema_t ordo__schemas[ORDO_MSG__COUNT] = {\n")
        for enum, text, pcf, fp in entries:
            out.write("    [%s] = {\n" % enum)
            schema_entry(out, "        ", text, pcf, fp)
            out.write("    },\n")
        out.write("};\n\n")
        out.write("const ordo__previous_schema_t ordo__previous_schemas[] = {"
                  "\n")
        for enum, version, text, pcf, fp in previous:
            out.write("    {\n        .type = %s,\n        .version = %d,\n"
                      "        .schema = {\n" % (enum, version))
            schema_entry(out, "            ", text, pcf, fp)
            out.write("        },\n    },\n")
        out.write("    { .type = ORDO_MSG_NONE }, /* the end */\n};\n")


if __name__ == "__main__":
    main(sys.argv)
