//! Python bindings (standard library only, Python 3.9 and later) over
//! ordo's JSON call path: a dataclass per struct, a class per enum with a
//! dataclass subclass per variant, and a `Procedures` class whose methods
//! check their arguments' types and integer ranges before calling.

use std::collections::BTreeSet;
use std::fmt::Write;

use anyhow::Context;
use ordo_client::ModuleDescription;
use ordo_client::schema::{Fields, Shape, TypeBody};

use super::{ModuleTypes, PYTHON_KEYWORDS, assign_names, camel_case, snake_case, unique};

/// Names a generated class must not take: what the file itself defines or
/// uses.
const RESERVED: &[&str] = &[
    "Procedures",
    "OrdoError",
    "TypeError",
    "ValueError",
    "Exception",
    "BaseException",
    "KeyError",
    "None",
    "True",
    "False",
    "NotImplemented",
    "Ellipsis",
];

/// A Python identifier for `name`: snake_case, a keyword or `self` with
/// `_` appended.
fn python_ident(name: &str) -> String {
    let ident = snake_case(name);
    if PYTHON_KEYWORDS.contains(&ident.as_str()) || ident == "self" {
        format!("{ident}_")
    } else {
        ident
    }
}

/// A Python string literal (JSON's escapes are Python's).
fn literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// A dataclass attribute: its name, annotation and doc.
type Attribute = (String, String, String);

struct Names {
    classes: std::collections::BTreeMap<String, String>,
}

impl Names {
    fn class(&self, id: &str) -> anyhow::Result<&str> {
        self.classes
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("type `{id}` is not defined in the schema"))
    }

    /// The shape as the runtime's data (see `_ordo_encode`).
    fn shape(&self, shape: &Shape) -> anyhow::Result<String> {
        Ok(match shape {
            Shape::Unit => "'unit'".into(),
            Shape::Bool => "'bool'".into(),
            Shape::U8 => "'u8'".into(),
            Shape::U16 => "'u16'".into(),
            Shape::U32 => "'u32'".into(),
            Shape::U64 => "'u64'".into(),
            Shape::U128 => "'u128'".into(),
            Shape::I8 => "'i8'".into(),
            Shape::I16 => "'i16'".into(),
            Shape::I32 => "'i32'".into(),
            Shape::I64 => "'i64'".into(),
            Shape::I128 => "'i128'".into(),
            Shape::F32 => "'f32'".into(),
            Shape::F64 => "'f64'".into(),
            Shape::Char => "'char'".into(),
            Shape::String => "'str'".into(),
            Shape::Bytes => "'bytes'".into(),
            Shape::Option(inner) => format!("('option', {})", self.shape(inner)?),
            Shape::Seq(item) => format!("('seq', {})", self.shape(item)?),
            Shape::Map { key, value } => {
                format!("('map', {}, {})", self.shape(key)?, self.shape(value)?)
            }
            Shape::Tuple(items) => format!("('tuple', ({}))", self.shape_list(items)?),
            Shape::Array { item, len } => format!("('array', {}, {len})", self.shape(item)?),
            Shape::Named(id) => format!("('named', {})", literal(self.class(id)?)),
        })
    }

    /// `a, b,` (a Python tuple's insides, trailing comma included).
    fn shape_list(&self, shapes: &[Shape]) -> anyhow::Result<String> {
        let mut out = String::new();
        for shape in shapes {
            out.push_str(&self.shape(shape)?);
            out.push_str(", ");
        }
        Ok(out.trim_end().to_string())
    }

    /// The annotation for a value of `shape`.
    fn annotation(&self, shape: &Shape) -> anyhow::Result<String> {
        Ok(match shape {
            Shape::Unit => "None".into(),
            Shape::Bool => "bool".into(),
            Shape::U8
            | Shape::U16
            | Shape::U32
            | Shape::U64
            | Shape::U128
            | Shape::I8
            | Shape::I16
            | Shape::I32
            | Shape::I64
            | Shape::I128 => "int".into(),
            Shape::F32 | Shape::F64 => "float".into(),
            Shape::Char | Shape::String => "str".into(),
            Shape::Bytes => "bytes".into(),
            Shape::Option(inner) => format!("_t.Optional[{}]", self.annotation(inner)?),
            Shape::Seq(item) | Shape::Array { item, .. } => {
                format!("_t.List[{}]", self.annotation(item)?)
            }
            Shape::Map { key, value } => format!(
                "_t.Dict[{}, {}]",
                self.annotation(key)?,
                self.annotation(value)?
            ),
            Shape::Tuple(items) if items.is_empty() => "_t.Tuple[()]".into(),
            Shape::Tuple(items) => format!(
                "_t.Tuple[{}]",
                items
                    .iter()
                    .map(|item| self.annotation(item))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(", ")
            ),
            Shape::Named(id) => self.class(id)?.to_string(),
        })
    }

    /// The fields as the runtime's data, and the dataclass's attributes
    /// (name, annotation, doc).
    fn fields(&self, fields: &Fields) -> anyhow::Result<(String, Vec<Attribute>)> {
        Ok(match fields {
            Fields::Unit => ("('unit',)".into(), Vec::new()),
            Fields::Newtype(shape) => (
                format!("('newtype', {})", self.shape(shape)?),
                vec![("value".into(), self.annotation(shape)?, String::new())],
            ),
            Fields::Tuple(shapes) => (
                format!("('tuple', ({}))", self.shape_list(shapes)?),
                shapes
                    .iter()
                    .enumerate()
                    .map(|(i, shape)| Ok((format!("f{i}"), self.annotation(shape)?, String::new())))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Fields::Named(named) => {
                let mut taken = BTreeSet::new();
                let mut data = String::new();
                let mut attributes = Vec::new();
                for field in named {
                    let attribute = unique(python_ident(&field.name), &mut taken);
                    let _ = write!(
                        data,
                        "({}, {}, {}), ",
                        literal(&field.name),
                        literal(&attribute),
                        self.shape(&field.shape)
                            .with_context(|| format!("field `{}`", field.name))?
                    );
                    attributes.push((attribute, self.annotation(&field.shape)?, field.doc.clone()));
                }
                (format!("('named', ({}))", data.trim_end()), attributes)
            }
        })
    }
}

/// A docstring's text: the doc's lines, indented, with `"""` and
/// backslashes escaped.
fn docstring(out: &mut String, lines: &[String], indent: &str) {
    let text = lines.join("\n");
    let text = text.replace('\\', "\\\\").replace("\"\"\"", "\\\"\\\"\\\"");
    let mut body = String::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            body.push('\n');
            if !line.is_empty() {
                body.push_str(indent);
            }
        }
        body.push_str(line);
    }
    if text.lines().count() > 1 {
        let _ = writeln!(out, "{indent}\"\"\"{body}\n{indent}\"\"\"");
    } else {
        let _ = writeln!(out, "{indent}\"\"\"{body}\"\"\"");
    }
}

fn doc_with(doc: &str, extra: &[String]) -> Vec<String> {
    let mut lines: Vec<String> = doc.lines().map(str::to_string).collect();
    if !lines.is_empty() && !extra.is_empty() {
        lines.push(String::new());
    }
    lines.extend(extra.iter().cloned());
    lines
}

fn write_attributes(out: &mut String, attributes: &[Attribute]) {
    for (name, annotation, doc) in attributes {
        for line in doc.lines() {
            let _ = writeln!(out, "    #: {line}");
        }
        let _ = writeln!(out, "    {name}: {annotation}");
    }
}

fn write_codec_methods(out: &mut String, class: &str) {
    let _ = writeln!(
        out,
        "\n    def to_json(self) -> _t.Any:\n        \"\"\"This value as the JSON value serde reads (dicts, lists, str, int, ...).\"\"\"\n        return _ordo_encode(('named', {name}), self, '')\n\n    @classmethod\n    def from_json(cls, value: _t.Any) -> {class}:\n        \"\"\"Reads a JSON value (as `json.loads` returns it).\"\"\"\n        return _ordo_decode(('named', {name}), value, '')",
        name = literal(class),
    );
}

/// The bindings of one module.
pub fn generate(module: &ModuleDescription) -> anyhow::Result<String> {
    let module_types = ModuleTypes::of(module);
    let names = Names {
        classes: assign_names(&module_types.types, RESERVED, |def| camel_case(&def.name)),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\"\"\"Typed client bindings for the ordo module `{}` (sha256 {}),\nwritten by `ordo generate python`. Do not edit: regenerate instead.\n\nStandard library only (Python 3.9 or later). The procedures go through\nordo's JSON call path: give `Procedures` a function that takes the\nprocedure's name and its JSON arguments and returns the JSON result, for\nexample `cli_transport(\"127.0.0.1:7878\")`, which runs `ordo call`:\n\n    procedures = Procedures(cli_transport(\"127.0.0.1:7878\"))\n\nArguments are checked before anything is sent: a value of the wrong type\nraises TypeError, an integer out of its Rust type's range ValueError, and\na call the server refuses or the procedure aborts raises OrdoError.\n\"\"\"",
        module.name, module.sha256
    );
    out.push_str(RUNTIME);

    let mut data = String::from("\n\n_ORDO_TYPES.update({\n");
    let mut classes = Vec::new();
    for (id, def) in &module_types.types {
        let class = names.class(id)?.to_string();
        let context = || format!("type `{}`", def.name);
        out.push_str("\n\n");
        match &def.body {
            TypeBody::Struct(fields) => {
                let (fields_data, attributes) = names.fields(fields).with_context(context)?;
                let _ = writeln!(data, "    {}: ('struct', {fields_data}),", literal(&class));
                out.push_str("@_dataclass(unsafe_hash=True)\n");
                let _ = writeln!(out, "class {class}:");
                let shape_doc = format!(
                    "JSON: {}",
                    match fields {
                        Fields::Unit => "null.".to_string(),
                        Fields::Newtype(_) => "its `value`.".to_string(),
                        Fields::Tuple(_) => "a list of its fields, f0, f1, ...".to_string(),
                        Fields::Named(_) => "an object keyed by field name.".to_string(),
                    }
                );
                docstring(&mut out, &doc_with(&def.doc, &[shape_doc]), "    ");
                out.push('\n');
                write_attributes(&mut out, &attributes);
                write_codec_methods(&mut out, &class);
                classes.push(class);
            }
            TypeBody::Enum(variants) => {
                let mut taken = BTreeSet::new();
                let mut variant_data = String::new();
                let mut variant_classes = Vec::new();
                for variant in variants {
                    let attribute = unique(camel_case(&variant.name), &mut taken);
                    let attribute = if PYTHON_KEYWORDS.contains(&attribute.as_str())
                        || ["to_json", "from_json"].contains(&attribute.as_str())
                    {
                        format!("{attribute}_")
                    } else {
                        attribute
                    };
                    let variant_class = format!("{class}_{attribute}");
                    let (fields_data, attributes) = names
                        .fields(&variant.fields)
                        .with_context(|| format!("variant `{}`", variant.name))
                        .with_context(context)?;
                    let _ = write!(
                        variant_data,
                        "({}, {}, {fields_data}), ",
                        literal(&variant.name),
                        literal(&variant_class)
                    );
                    variant_classes.push((attribute, variant_class, attributes, &variant.doc));
                }
                let _ = writeln!(
                    data,
                    "    {}: ('enum', ({})),",
                    literal(&class),
                    variant_data.trim_end()
                );
                let listing: Vec<String> = variant_classes
                    .iter()
                    .map(|(attribute, _, attributes, _)| {
                        let args: Vec<&str> = attributes.iter().map(|a| a.0.as_str()).collect();
                        format!("{class}.{attribute}({})", args.join(", "))
                    })
                    .collect();
                let _ = writeln!(out, "class {class}:");
                docstring(
                    &mut out,
                    &doc_with(
                        &def.doc,
                        &[
                            format!(
                                "An enum: make a value with one of its variants, {}.",
                                if listing.is_empty() {
                                    "(none)".to_string()
                                } else {
                                    listing.join(", ")
                                }
                            ),
                            "JSON: serde's externally tagged form, \"Variant\" or {\"Variant\": ...}.".into(),
                        ],
                    ),
                    "    ",
                );
                out.push('\n');
                for (attribute, variant_class, _, _) in &variant_classes {
                    let _ = writeln!(
                        out,
                        "    {attribute}: _t.ClassVar[_t.Type[{variant_class}]]"
                    );
                }
                write_codec_methods(&mut out, &class);
                classes.push(class.clone());
                for (attribute, variant_class, attributes, doc) in &variant_classes {
                    out.push_str("\n\n@_dataclass(unsafe_hash=True)\n");
                    let _ = writeln!(out, "class {variant_class}({class}):");
                    docstring(
                        &mut out,
                        &doc_with(doc, &[format!("The variant `{class}.{attribute}`.")]),
                        "    ",
                    );
                    if !attributes.is_empty() {
                        out.push('\n');
                    }
                    write_attributes(&mut out, attributes);
                    classes.push(variant_class.clone());
                }
                out.push_str("\n\n");
                for (attribute, variant_class, _, _) in &variant_classes {
                    let _ = writeln!(out, "{class}.{attribute} = {variant_class}");
                }
            }
        }
    }
    data.push_str("})\n");
    out.push_str(&data);
    out.push_str("_ORDO_CLASSES.update({\n");
    for class in &classes {
        let _ = writeln!(out, "    {}: {class},", literal(class));
    }
    out.push_str("})\n");

    out.push_str(
        "\n\nclass Procedures:\n    \"\"\"The module's procedures, each a method that checks its arguments,\n    calls `call_json(procedure, json_args)` and decodes the JSON result.\"\"\"\n\n    def __init__(self, call_json: _t.Callable[[str, str], str]) -> None:\n        self._ordo_call_json = call_json\n",
    );
    let mut methods: BTreeSet<String> = ["_ordo_call_json".to_string()].into();
    for procedure in &module_types.procedures {
        let context = || format!("procedure `{}`", procedure.name);
        let method = unique(python_ident(&procedure.name), &mut methods);
        let mut taken: BTreeSet<String> = ["self".to_string()].into();
        let mut params = String::new();
        let mut args = String::new();
        for param in &procedure.params {
            let ident = unique(python_ident(&param.name), &mut taken);
            let _ = write!(
                params,
                ", {ident}: {}",
                names.annotation(&param.shape).with_context(context)?
            );
            let _ = write!(
                args,
                "({}, {}, {ident}), ",
                literal(&param.name),
                names.shape(&param.shape).with_context(context)?
            );
        }
        let signature = format!(
            "{}{}",
            procedure.signature(),
            if procedure.read_only {
                " (read-only)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "\n    def {method}(self{params}) -> {}:",
            names.annotation(&procedure.result).with_context(context)?
        );
        docstring(
            &mut out,
            &doc_with(&procedure.doc, &[signature]),
            "        ",
        );
        let _ = writeln!(
            out,
            "        return _ordo_call(self._ordo_call_json, {}, ({}), {})",
            literal(&procedure.name),
            args.trim_end(),
            names.shape(&procedure.result).with_context(context)?
        );
    }
    if !module.unchecked.is_empty() {
        out.push_str(
            "\n\n# Left out (no schema, calls are not checked; use call_json directly):\n",
        );
        for name in &module.unchecked {
            let _ = writeln!(out, "# - {name}");
        }
    }
    Ok(out)
}

/// The encoder, decoder and transport every generated file carries.
const RUNTIME: &str = r#"

from __future__ import annotations

import json as _json
import math as _math
import os as _os
import subprocess as _subprocess
import typing as _t
from dataclasses import dataclass as _dataclass

__all__ = ["Procedures", "OrdoError", "cli_transport"]


class OrdoError(Exception):
    """A call that did not commit: refused by the server, aborted by the
    procedure, or not sent (the message is ordo's one-line error)."""


def cli_transport(
    server: str,
    ordo: str = "ordo",
    token: _t.Optional[str] = None,
    tls_ca: _t.Optional[str] = None,
) -> _t.Callable[[str, str], str]:
    """A `call_json` for `Procedures` that runs `ordo call --server SERVER
    PROCEDURE ARGS` with the `ordo` executable given, and raises OrdoError
    with ordo's one-line error when it fails. The client token, if any, is
    passed in the environment, not on the command line."""

    def call_json(procedure: str, args: str) -> str:
        env = dict(_os.environ)
        if token is not None:
            env["ORDO_CLIENT_TOKEN"] = token
        command = [ordo, "call", "--server", server]
        if tls_ca is not None:
            command += ["--tls-ca", tls_ca]
        command += ["--", procedure, args]
        done = _subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            message = lines[-1] if lines else f"ordo exited with status {done.returncode}"
            if message.startswith("ordo: "):
                message = message[len("ordo: "):]
            raise OrdoError(message)
        # `ordo call` prints nothing for a JSON `null` result.
        return done.stdout.strip() or "null"

    return call_json


_ORDO_INT_RANGES = {
    "u8": (0, 2**8 - 1),
    "u16": (0, 2**16 - 1),
    "u32": (0, 2**32 - 1),
    "u64": (0, 2**64 - 1),
    "u128": (0, 2**128 - 1),
    "i8": (-(2**7), 2**7 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "i32": (-(2**31), 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "i128": (-(2**127), 2**127 - 1),
}

# Class name -> ('struct', fields) or ('enum', ((json_name, class, fields), ...)),
# fields: ('unit',), ('newtype', shape), ('tuple', (shape, ...)) or
# ('named', ((json_name, attribute, shape), ...)). Filled in below.
_ORDO_TYPES: _t.Dict[str, _t.Any] = {}
_ORDO_CLASSES: _t.Dict[str, type] = {}


def _ordo_at(path: str) -> str:
    return f"at `{path}`: " if path else ""


def _ordo_join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _ordo_kind(value: _t.Any) -> str:
    return "None" if value is None else type(value).__name__


def _ordo_render(shape: _t.Any) -> str:
    if isinstance(shape, str):
        return {"str": "String", "bytes": "Bytes", "unit": "()"}.get(shape, shape)
    kind = shape[0]
    if kind == "option":
        return f"Option<{_ordo_render(shape[1])}>"
    if kind == "seq":
        return f"Vec<{_ordo_render(shape[1])}>"
    if kind == "map":
        return f"BTreeMap<{_ordo_render(shape[1])}, {_ordo_render(shape[2])}>"
    if kind == "tuple":
        return "(" + ", ".join(_ordo_render(s) for s in shape[1]) + ")"
    if kind == "array":
        return f"[{_ordo_render(shape[1])}; {shape[2]}]"
    return shape[1]


def _ordo_int(shape: str, value: _t.Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{_ordo_at(path)}expected {shape} (an int), found {_ordo_kind(value)}")
    low, high = _ORDO_INT_RANGES[shape]
    if not low <= value <= high:
        raise ValueError(f"{_ordo_at(path)}{value} is out of range for {shape} ({low} to {high})")
    return value


def _ordo_encode(shape: _t.Any, value: _t.Any, path: str) -> _t.Any:
    """`value` as the JSON value serde reads for `shape`, checked."""
    if isinstance(shape, str):
        if shape in _ORDO_INT_RANGES:
            return _ordo_int(shape, value, path)
        if shape in ("f32", "f64"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{_ordo_at(path)}expected {shape} (a float), found {_ordo_kind(value)}")
            if not _math.isfinite(value):
                raise ValueError(f"{_ordo_at(path)}{value} cannot be written in JSON")
            return float(value)
        if shape == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{_ordo_at(path)}expected bool, found {_ordo_kind(value)}")
            return value
        if shape == "str":
            if not isinstance(value, str):
                raise TypeError(f"{_ordo_at(path)}expected String (a str), found {_ordo_kind(value)}")
            return value
        if shape == "char":
            if not isinstance(value, str) or len(value) != 1:
                raise TypeError(f"{_ordo_at(path)}expected char (a str of one character), found {value!r}")
            return value
        if shape == "bytes":
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError(f"{_ordo_at(path)}expected Bytes (bytes), found {_ordo_kind(value)}")
            return list(value)
        if value is not None:
            raise TypeError(f"{_ordo_at(path)}expected () (None), found {_ordo_kind(value)}")
        return None
    kind = shape[0]
    if kind == "option":
        return None if value is None else _ordo_encode(shape[1], value, path)
    if kind in ("seq", "array", "tuple"):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{_ordo_at(path)}expected {_ordo_render(shape)} (a list), found {_ordo_kind(value)}")
        if kind == "seq":
            return [_ordo_encode(shape[1], v, f"{path}[{i}]") for i, v in enumerate(value)]
        items = shape[1:2] * shape[2] if kind == "array" else shape[1]
        if len(value) != len(items):
            raise ValueError(f"{_ordo_at(path)}expected {_ordo_render(shape)}: {len(items)} items, found {len(value)}")
        if kind == "array":
            return [_ordo_encode(s, v, f"{path}[{i}]") for i, (s, v) in enumerate(zip(items, value))]
        return [_ordo_encode(s, v, _ordo_join(path, str(i))) for i, (s, v) in enumerate(zip(items, value))]
    if kind == "map":
        if not isinstance(value, dict):
            raise TypeError(f"{_ordo_at(path)}expected {_ordo_render(shape)} (a dict), found {_ordo_kind(value)}")
        out = {}
        for k, v in value.items():
            key = _ordo_key(shape[1], k, path)
            out[key] = _ordo_encode(shape[2], v, _ordo_join(path, key))
        return out
    return _ordo_encode_named(shape[1], value, path)


def _ordo_key(shape: _t.Any, key: _t.Any, path: str) -> str:
    """A map key as serde_json writes it: always a string."""
    if shape in _ORDO_INT_RANGES:
        return str(_ordo_int(shape, key, f"{path} (a key)"))
    if shape in ("str", "char"):
        return _ordo_encode(shape, key, f"{path} (a key)")
    if shape == "bool":
        return "true" if _ordo_encode("bool", key, f"{path} (a key)") else "false"
    if not isinstance(shape, str) and shape[0] == "named":
        encoded = _ordo_encode(shape, key, f"{path} (a key)")
        if isinstance(encoded, str):
            return encoded
        inner = _ORDO_TYPES[shape[1]]
        if inner[0] == "struct" and inner[1][0] == "newtype":
            return _ordo_key(inner[1][1], key.value, path)
    raise TypeError(f"{_ordo_at(path)}a map key of type {_ordo_render(shape)} cannot be written in JSON")


def _ordo_encode_fields(fields: _t.Any, value: _t.Any, path: str) -> _t.Any:
    kind = fields[0]
    if kind == "unit":
        return None
    if kind == "newtype":
        return _ordo_encode(fields[1], value.value, path)
    if kind == "tuple":
        return [_ordo_encode(s, getattr(value, f"f{i}"), _ordo_join(path, str(i))) for i, s in enumerate(fields[1])]
    return {name: _ordo_encode(s, getattr(value, attribute), _ordo_join(path, name)) for name, attribute, s in fields[1]}


def _ordo_encode_named(name: str, value: _t.Any, path: str) -> _t.Any:
    cls = _ORDO_CLASSES[name]
    if not isinstance(value, cls):
        raise TypeError(f"{_ordo_at(path)}expected {name}, found {_ordo_kind(value)}")
    definition = _ORDO_TYPES[name]
    if definition[0] == "struct":
        return _ordo_encode_fields(definition[1], value, path)
    for json_name, class_name, fields in definition[1]:
        if type(value) is _ORDO_CLASSES[class_name]:
            if fields[0] == "unit":
                return json_name
            return {json_name: _ordo_encode_fields(fields, value, _ordo_join(path, json_name))}
    raise TypeError(f"{_ordo_at(path)}expected one of the variants of {name}, found {_ordo_kind(value)}")


def _ordo_decode(shape: _t.Any, value: _t.Any, path: str) -> _t.Any:
    """A JSON value (as `json.loads` returns it) of `shape`, checked."""
    if isinstance(shape, str):
        if shape in _ORDO_INT_RANGES:
            return _ordo_int(shape, value, path)
        if shape in ("f32", "f64"):
            if value is None:  # serde_json writes NaN and infinities as null
                return _math.nan
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{_ordo_at(path)}expected {shape}, found {_ordo_kind(value)}")
            return float(value)
        if shape == "bytes":
            if isinstance(value, str):
                return value.encode()
            if not isinstance(value, list):
                raise TypeError(f"{_ordo_at(path)}expected Bytes, found {_ordo_kind(value)}")
            return bytes(_ordo_int("u8", v, f"{path}[{i}]") for i, v in enumerate(value))
        return _ordo_encode(shape, value, path)
    kind = shape[0]
    if kind == "option":
        return None if value is None else _ordo_decode(shape[1], value, path)
    if kind in ("seq", "array", "tuple"):
        if not isinstance(value, list):
            raise TypeError(f"{_ordo_at(path)}expected {_ordo_render(shape)}, found {_ordo_kind(value)}")
        if kind == "seq":
            return [_ordo_decode(shape[1], v, f"{path}[{i}]") for i, v in enumerate(value)]
        items = shape[1:2] * shape[2] if kind == "array" else shape[1]
        if len(value) != len(items):
            raise ValueError(f"{_ordo_at(path)}expected {len(items)} items, found {len(value)}")
        decoded = [_ordo_decode(s, v, _ordo_join(path, str(i))) for i, (s, v) in enumerate(zip(items, value))]
        return tuple(decoded) if kind == "tuple" else decoded
    if kind == "map":
        if not isinstance(value, dict):
            raise TypeError(f"{_ordo_at(path)}expected {_ordo_render(shape)}, found {_ordo_kind(value)}")
        return {_ordo_decode_key(shape[1], k, path): _ordo_decode(shape[2], v, _ordo_join(path, k)) for k, v in value.items()}
    return _ordo_decode_named(shape[1], value, path)


def _ordo_decode_key(shape: _t.Any, key: str, path: str) -> _t.Any:
    if shape in _ORDO_INT_RANGES:
        try:
            number = int(key)
        except ValueError:
            raise ValueError(f"{_ordo_at(path)}map key {key!r} is not a {shape}") from None
        return _ordo_int(shape, number, path)
    if shape == "bool":
        return key == "true"
    if not isinstance(shape, str) and shape[0] == "named":
        inner = _ORDO_TYPES[shape[1]]
        if inner[0] == "struct" and inner[1][0] == "newtype":
            return _ORDO_CLASSES[shape[1]](_ordo_decode_key(inner[1][1], key, path))
        return _ordo_decode(shape, key, path)
    return key


def _ordo_decode_fields(cls: type, fields: _t.Any, value: _t.Any, path: str) -> _t.Any:
    kind = fields[0]
    if kind == "unit":
        return cls()
    if kind == "newtype":
        return cls(_ordo_decode(fields[1], value, path))
    if kind == "tuple":
        if not isinstance(value, list) or len(value) != len(fields[1]):
            raise TypeError(f"{_ordo_at(path)}expected a list of {len(fields[1])} items, found {_ordo_kind(value)}")
        return cls(*[_ordo_decode(s, v, _ordo_join(path, str(i))) for i, (s, v) in enumerate(zip(fields[1], value))])
    if not isinstance(value, dict):
        raise TypeError(f"{_ordo_at(path)}expected an object, found {_ordo_kind(value)}")
    return cls(**{attribute: _ordo_decode(s, value.get(name), _ordo_join(path, name)) for name, attribute, s in fields[1]})


def _ordo_decode_named(name: str, value: _t.Any, path: str) -> _t.Any:
    definition = _ORDO_TYPES[name]
    if definition[0] == "struct":
        return _ordo_decode_fields(_ORDO_CLASSES[name], definition[1], value, path)
    if isinstance(value, str):
        tag, content = value, None
    elif isinstance(value, dict) and len(value) == 1:
        ((tag, content),) = value.items()
    else:
        raise TypeError(f"{_ordo_at(path)}expected {name} as \"Variant\" or {{\"Variant\": ...}}, found {_ordo_kind(value)}")
    for json_name, class_name, fields in definition[1]:
        if json_name == tag:
            return _ordo_decode_fields(_ORDO_CLASSES[class_name], fields, content, _ordo_join(path, tag))
    raise ValueError(f"{_ordo_at(path)}unknown variant {tag!r} of {name}")


def _ordo_call(
    call_json: _t.Callable[[str, str], str],
    procedure: str,
    params: _t.Tuple[_t.Tuple[str, _t.Any, _t.Any], ...],
    result: _t.Any,
) -> _t.Any:
    args = {name: _ordo_encode(shape, value, name) for name, shape, value in params}
    text = call_json(procedure, _json.dumps(args, separators=(",", ":"), ensure_ascii=False))
    return _ordo_decode(result, _json.loads(text), "result")
"#;
