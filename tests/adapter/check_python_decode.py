#!/usr/bin/env python3
"""Decode ordo's single-object messages with fastavro, an Avro
implementation independent of ours, using only schemas/*.avsc.

usage: check_python_decode.py --writer WRITE_SAMPLES --schemas DIR

DESIGN.md, "Avro": any Avro library can decode a topic with the .avsc
files alone. For every sample that write_samples produces this checks
the marker C3 01 and that the 8 fingerprint bytes are fastavro's
CRC-64-AVRO fingerprint of the schema (Avro spec, "Single object
encoding"), decodes the datum with fastavro.schemaless_reader, compares
it with the expected values, requires that nothing trails the datum, and
requires that fastavro writes the same bytes from those values. Data
written with a previous version of a schema (schemas/previous/) must
read, under Avro's resolution rules, as the current one with defaults.

A missing fastavro is a failure, not a skip: without it this checks
nothing. Ends with criterion's synthesis line, which CI sums.
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile


def synthesis(passed, failed):
    print("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
          "Crashing: 0" % (passed + failed, passed, failed))


def check_previous(schemas_dir, schemas, expected, check):
    """schemas/previous/<Type>.v<N>.avsc, versions writers used before
    (decision 0024): data written with one reads, under Avro's schema
    resolution, as the current schema with the added fields' defaults;
    the C decoder's side is tests/adapter/test_codec.c."""
    import fastavro
    from fastavro.schema import parse_schema
    d = os.path.join(schemas_dir, "previous")
    names = sorted(n for n in os.listdir(d) if n.endswith(".avsc")) \
        if os.path.isdir(d) else []
    check(names, "schemas/previous/ has no schema")
    for name in names:
        with open(os.path.join(d, name), encoding="utf-8") as f:
            old = json.load(f)
        check(name.startswith(old["name"] + ".v"),
              "previous/%s names record %s" % (name, old["name"]))
        if old["name"] not in schemas:
            check(False, "previous/%s: no current schema" % name)
            continue
        cur_parsed = schemas[old["name"]][0]
        cur = {f["name"]: f for f in cur_parsed["fields"]}
        kept = [f["name"] for f in old["fields"]]
        added = [n for n in cur if n not in kept]
        old_parsed = parse_schema(old)
        for e in expected:
            if e["type"] != old["name"]:
                continue
            out = io.BytesIO()
            fastavro.schemaless_writer(out, old_parsed,
                                       {k: e["fields"][k] for k in kept})
            out.seek(0)
            got = fastavro.schemaless_reader(out, old_parsed, cur_parsed)
            want = dict(e["fields"])
            for n in added:
                want[n] = cur[n]["default"]
            check(got == want, "previous/%s, %s: read as the current "
                  "schema: %r" % (name, e["file"], got))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writer", required=True)
    ap.add_argument("--schemas", required=True)
    args = ap.parse_args()

    try:
        import fastavro
        from fastavro.schema import fingerprint, parse_schema, \
            to_parsing_canonical_form
    except ImportError as e:
        print("FAIL: fastavro is not importable by %s (%s); set ORDO_PYTHON "
              "to a python with fastavro" % (sys.executable, e))
        synthesis(0, 1)
        return 1

    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL: " + what)

    schemas = {}
    for name in sorted(os.listdir(args.schemas)):
        if not name.endswith(".avsc"):
            continue
        with open(os.path.join(args.schemas, name), encoding="utf-8") as f:
            schema = json.load(f)
        parsed = parse_schema(schema)
        fp = fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO")
        check(name == schema["name"] + ".avsc",
              "%s names record %s" % (name, schema["name"]))
        schemas[schema["name"]] = (parsed, bytes.fromhex(fp))

    with tempfile.TemporaryDirectory(prefix="ordo-samples-") as d:
        subprocess.run([args.writer, d], check=True)
        with open(os.path.join(d, "expected.json"), encoding="utf-8") as f:
            expected = json.load(f)
        seen = set()
        for e in expected:
            seen.add(e["type"])
            with open(os.path.join(d, e["file"]), "rb") as f:
                data = f.read()
            if e["type"] not in schemas:
                check(False, "%s: no schemas/%s.avsc" % (e["file"], e["type"]))
                continue
            parsed, fp = schemas[e["type"]]
            if data[:2] != b"\xc3\x01":
                check(False, "%s: marker %s" % (e["file"], data[:2].hex()))
                continue
            if data[2:10] != fp:
                check(False, "%s: fingerprint %s, fastavro says %s" %
                      (e["file"], data[2:10].hex(), fp.hex()))
                continue
            stream = io.BytesIO(data[10:])
            try:
                got = fastavro.schemaless_reader(stream, parsed)
            except Exception as x:  # any failure to decode is a failure
                check(False, "%s: fastavro: %r" % (e["file"], x))
                continue
            if got != e["fields"]:
                diff = [k for k in e["fields"] if got.get(k) != e["fields"][k]]
                check(False, "%s: fields differ: %s" % (e["file"], diff))
                continue
            if stream.tell() != len(data) - 10:
                check(False, "%s: %d bytes after the datum" %
                      (e["file"], len(data) - 10 - stream.tell()))
                continue
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, e["fields"])
            check(out.getvalue() == data[10:],
                  "%s: fastavro writes different bytes" % e["file"])
        check(seen == set(schemas),
              "types without samples or schemas: %s" %
              sorted(seen ^ set(schemas)))
        check_previous(args.schemas, schemas, expected, check)

    synthesis(passed, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
