//! TypeScript bindings without dependencies over ordo's JSON call path:
//! an interface or type per struct, a tagged union per enum (serde's
//! externally tagged form), and a `Procedures` class with one async method
//! per procedure. 64- and 128-bit integers are `bigint`, written and read
//! as JSON text so that no precision is lost. Only erasable syntax is used,
//! so Node's type stripping can run the file as well as `tsc` can compile
//! it (target ES2020 or later, for `bigint`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use anyhow::Context;
use ordo_client::ModuleDescription;
use ordo_client::schema::{Fields, Shape, TypeBody};

use super::{ModuleTypes, assign_names, camel_case, doc_lines, snake_case, unique};

/// Names a generated type must not take: the standard globals the file
/// uses, and its own exports.
const RESERVED: &[&str] = &[
    "Procedures",
    "OrdoError",
    "Map",
    "Array",
    "Uint8Array",
    "Promise",
    "Record",
    "Error",
    "TypeError",
    "RangeError",
    "Number",
    "String",
    "Boolean",
    "BigInt",
    "Object",
    "JSON",
    "Symbol",
    "Date",
    "Function",
    "Infinity",
    "NaN",
    "Readonly",
];

/// Words that cannot name a parameter (JavaScript's reserved words in
/// strict mode, and `arguments`/`eval`).
const RESERVED_WORDS: &[&str] = &[
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "debugger",
    "default",
    "delete",
    "do",
    "else",
    "enum",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "function",
    "if",
    "import",
    "in",
    "instanceof",
    "new",
    "null",
    "return",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "typeof",
    "var",
    "void",
    "while",
    "with",
    "yield",
    "let",
    "static",
    "implements",
    "interface",
    "package",
    "private",
    "protected",
    "public",
    "await",
    "arguments",
    "eval",
];

fn literal(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// An object key: bare when it is an identifier, quoted otherwise.
fn key(name: &str) -> String {
    let identifier = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if identifier {
        name.to_string()
    } else {
        literal(name)
    }
}

fn param_ident(name: &str) -> String {
    let ident = snake_case(name);
    if RESERVED_WORDS.contains(&ident.as_str()) {
        format!("{ident}_")
    } else {
        ident
    }
}

struct Names {
    types: BTreeMap<String, String>,
}

impl Names {
    fn name(&self, id: &str) -> anyhow::Result<&str> {
        self.types
            .get(id)
            .map(String::as_str)
            .with_context(|| format!("type `{id}` is not defined in the schema"))
    }

    fn ts_type(&self, shape: &Shape) -> anyhow::Result<String> {
        Ok(match shape {
            Shape::Unit => "null".into(),
            Shape::Bool => "boolean".into(),
            Shape::U8
            | Shape::U16
            | Shape::U32
            | Shape::I8
            | Shape::I16
            | Shape::I32
            | Shape::F32
            | Shape::F64 => "number".into(),
            Shape::U64 | Shape::U128 | Shape::I64 | Shape::I128 => "bigint".into(),
            Shape::Char | Shape::String => "string".into(),
            Shape::Bytes => "Uint8Array".into(),
            Shape::Option(inner) => format!("{} | null", self.ts_type(inner)?),
            Shape::Seq(item) | Shape::Array { item, .. } => {
                format!("Array<{}>", self.ts_type(item)?)
            }
            Shape::Map { key, value } => {
                format!("Map<{}, {}>", self.ts_type(key)?, self.ts_type(value)?)
            }
            Shape::Tuple(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(|item| self.ts_type(item))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(", ")
            ),
            Shape::Named(id) => self.name(id)?.to_string(),
        })
    }

    /// The shape as the runtime's data (see `OrdoShape`).
    fn shape(&self, shape: &Shape) -> anyhow::Result<String> {
        Ok(match shape {
            Shape::Unit => "\"unit\"".into(),
            Shape::Bool => "\"bool\"".into(),
            Shape::U8 => "\"u8\"".into(),
            Shape::U16 => "\"u16\"".into(),
            Shape::U32 => "\"u32\"".into(),
            Shape::U64 => "\"u64\"".into(),
            Shape::U128 => "\"u128\"".into(),
            Shape::I8 => "\"i8\"".into(),
            Shape::I16 => "\"i16\"".into(),
            Shape::I32 => "\"i32\"".into(),
            Shape::I64 => "\"i64\"".into(),
            Shape::I128 => "\"i128\"".into(),
            Shape::F32 => "\"f32\"".into(),
            Shape::F64 => "\"f64\"".into(),
            Shape::Char => "\"char\"".into(),
            Shape::String => "\"string\"".into(),
            Shape::Bytes => "\"bytes\"".into(),
            Shape::Option(inner) => format!("{{ option: {} }}", self.shape(inner)?),
            Shape::Seq(item) => format!("{{ seq: {} }}", self.shape(item)?),
            Shape::Map { key, value } => {
                format!("{{ map: [{}, {}] }}", self.shape(key)?, self.shape(value)?)
            }
            Shape::Tuple(items) => format!("{{ tuple: [{}] }}", self.shapes(items)?),
            Shape::Array { item, len } => {
                format!("{{ array: {}, len: {len} }}", self.shape(item)?)
            }
            Shape::Named(id) => format!("{{ named: {} }}", literal(self.name(id)?)),
        })
    }

    fn shapes(&self, shapes: &[Shape]) -> anyhow::Result<String> {
        Ok(shapes
            .iter()
            .map(|shape| self.shape(shape))
            .collect::<anyhow::Result<Vec<_>>>()?
            .join(", "))
    }

    fn fields_data(&self, fields: &Fields) -> anyhow::Result<String> {
        Ok(match fields {
            Fields::Unit => "\"unit\"".into(),
            Fields::Newtype(shape) => format!("{{ newtype: {} }}", self.shape(shape)?),
            Fields::Tuple(shapes) => format!("{{ tuple: [{}] }}", self.shapes(shapes)?),
            Fields::Named(named) => format!(
                "{{ fields: [{}] }}",
                named
                    .iter()
                    .map(|field| Ok(format!(
                        "[{}, {}]",
                        literal(&field.name),
                        self.shape(&field.shape)
                            .with_context(|| format!("field `{}`", field.name))?
                    )))
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(", ")
            ),
        })
    }

    /// An object type of named fields, one per line at `indent`.
    fn object_type(
        &self,
        fields: &[ordo_client::schema::Field],
        indent: &str,
    ) -> anyhow::Result<String> {
        let mut out = String::from("{\n");
        for field in fields {
            push_doc(&mut out, &field.doc, &format!("{indent}  "));
            let _ = writeln!(
                out,
                "{indent}  {}: {};",
                key(&field.name),
                self.ts_type(&field.shape)
                    .with_context(|| format!("field `{}`", field.name))?
            );
        }
        let _ = write!(out, "{indent}}}");
        Ok(out)
    }
}

fn push_doc(out: &mut String, doc: &str, indent: &str) {
    let lines = doc_lines(doc);
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(out, "{indent}/**");
    for line in lines {
        let line = line.replace("*/", "*\\/");
        if line.is_empty() {
            let _ = writeln!(out, "{indent} *");
        } else {
            let _ = writeln!(out, "{indent} * {line}");
        }
    }
    let _ = writeln!(out, "{indent} */");
}

/// The bindings of one module.
pub fn generate(module: &ModuleDescription) -> anyhow::Result<String> {
    let module_types = ModuleTypes::of(module);
    let names = Names {
        types: assign_names(&module_types.types, RESERVED, |def| camel_case(&def.name)),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "// Typed client bindings for the ordo module `{}` (sha256 {}),\n\
         // written by `ordo generate typescript`. Do not edit: regenerate instead.\n\
         //\n\
         // No dependencies. The procedures go through ordo's JSON call path: give\n\
         // `Procedures` a function that takes the procedure's name and its JSON\n\
         // arguments and resolves to the JSON result (for example over `ordo call`\n\
         // or a gateway of yours). u64, i64, u128 and i128 are `bigint`, written and\n\
         // read as JSON text without losing precision; needs target ES2020 or later.\n\
         // Arguments are checked before anything is sent: a value of the wrong type\n\
         // throws TypeError, an integer out of its Rust type's range RangeError.",
        module.name, module.sha256
    );
    out.push_str(RUNTIME);

    let mut data = String::from("\nconst ORDO_TYPES: Record<string, OrdoTypeDef> = {\n");
    for (id, def) in &module_types.types {
        let name = names.name(id)?;
        let context = || format!("type `{}`", def.name);
        out.push('\n');
        push_doc(&mut out, &def.doc, "");
        match &def.body {
            TypeBody::Struct(fields) => {
                let _ = writeln!(
                    data,
                    "  {}: {{ struct: {} }},",
                    literal(name),
                    names.fields_data(fields).with_context(context)?
                );
                match fields {
                    Fields::Named(named) => {
                        let _ = writeln!(
                            out,
                            "export interface {name} {}",
                            names.object_type(named, "").with_context(context)?
                        );
                    }
                    Fields::Unit => {
                        let _ = writeln!(out, "export type {name} = null;");
                    }
                    Fields::Newtype(shape) => {
                        let _ = writeln!(
                            out,
                            "export type {name} = {};",
                            names.ts_type(shape).with_context(context)?
                        );
                    }
                    Fields::Tuple(shapes) => {
                        let _ = writeln!(
                            out,
                            "export type {name} = {};",
                            names
                                .ts_type(&Shape::Tuple(shapes.clone()))
                                .with_context(context)?
                        );
                    }
                }
            }
            TypeBody::Enum(variants) => {
                let mut variants_data = Vec::new();
                let mut arms = Vec::new();
                for variant in variants {
                    let context = || format!("variant `{}` of `{}`", variant.name, def.name);
                    variants_data.push(format!(
                        "[{}, {}]",
                        literal(&variant.name),
                        names.fields_data(&variant.fields).with_context(context)?
                    ));
                    let mut arm = String::new();
                    push_doc(&mut arm, &variant.doc, "  ");
                    let content = match &variant.fields {
                        Fields::Unit => None,
                        Fields::Newtype(shape) => Some(names.ts_type(shape).with_context(context)?),
                        Fields::Tuple(shapes) => Some(
                            names
                                .ts_type(&Shape::Tuple(shapes.clone()))
                                .with_context(context)?,
                        ),
                        Fields::Named(named) => {
                            Some(names.object_type(named, "  ").with_context(context)?)
                        }
                    };
                    match content {
                        None => {
                            let _ = write!(arm, "  | {}", literal(&variant.name));
                        }
                        Some(content) => {
                            let _ = write!(arm, "  | {{ {}: {content} }}", key(&variant.name));
                        }
                    }
                    arms.push(arm);
                }
                let _ = writeln!(
                    data,
                    "  {}: {{ variants: [{}] }},",
                    literal(name),
                    variants_data.join(", ")
                );
                if arms.is_empty() {
                    let _ = writeln!(out, "export type {name} = never;");
                } else {
                    let _ = writeln!(out, "export type {name} =\n{};", arms.join("\n"));
                }
            }
        }
    }
    data.push_str("};\n");
    out.push_str(&data);

    out.push_str(
        "\n/** The module's procedures, each an async method that checks its\n * arguments, calls `callJson(procedure, jsonArgs)` and decodes the JSON\n * result. */\nexport class Procedures {\n  private readonly callJson: (procedure: string, args: string) => Promise<string>;\n\n  constructor(callJson: (procedure: string, args: string) => Promise<string>) {\n    this.callJson = callJson;\n  }\n",
    );
    let mut methods: BTreeSet<String> = ["callJson".to_string(), "constructor".to_string()].into();
    for procedure in &module_types.procedures {
        let context = || format!("procedure `{}`", procedure.name);
        let method = unique(snake_case(&procedure.name), &mut methods);
        let mut taken = BTreeSet::new();
        let mut params = Vec::new();
        let mut args = Vec::new();
        for param in &procedure.params {
            let ident = unique(param_ident(&param.name), &mut taken);
            params.push(format!(
                "{ident}: {}",
                names.ts_type(&param.shape).with_context(context)?
            ));
            args.push(format!(
                "[{}, {}, {ident}]",
                literal(&param.name),
                names.shape(&param.shape).with_context(context)?
            ));
        }
        let signature = format!(
            "`{}`{}",
            procedure.signature(),
            if procedure.read_only {
                " (read-only)"
            } else {
                ""
            }
        );
        let doc = if procedure.doc.is_empty() {
            signature
        } else {
            format!("{}\n\n{signature}", procedure.doc)
        };
        out.push('\n');
        push_doc(&mut out, &doc, "  ");
        let call = format!(
            "ordoCall(this.callJson, {}, [{}], {})",
            literal(&procedure.name),
            args.join(", "),
            names.shape(&procedure.result).with_context(context)?
        );
        if procedure.result == Shape::Unit {
            let _ = writeln!(
                out,
                "  async {method}({}): Promise<void> {{\n    await {call};\n  }}",
                params.join(", ")
            );
        } else {
            let result = names.ts_type(&procedure.result).with_context(context)?;
            let _ = writeln!(
                out,
                "  async {method}({}): Promise<{result}> {{\n    return (await {call}) as {result};\n  }}",
                params.join(", ")
            );
        }
    }
    out.push_str("}\n");
    if !module.unchecked.is_empty() {
        out.push_str("\n// Left out (no schema, calls are not checked; use callJson directly):\n");
        for name in &module.unchecked {
            let _ = writeln!(out, "// - {name}");
        }
    }
    Ok(out)
}

/// The encoder, JSON reader and decoder every generated file carries.
const RUNTIME: &str = r#"
/* eslint-disable */

/** A shape as data: a primitive's name, or a compound of shapes. */
type OrdoShape =
  | string
  | { option: OrdoShape }
  | { seq: OrdoShape }
  | { map: [OrdoShape, OrdoShape] }
  | { tuple: OrdoShape[] }
  | { array: OrdoShape; len: number }
  | { named: string };
type OrdoFields =
  | "unit"
  | { newtype: OrdoShape }
  | { tuple: OrdoShape[] }
  | { fields: Array<[string, OrdoShape]> };
type OrdoTypeDef = { struct: OrdoFields } | { variants: Array<[string, OrdoFields]> };

/** A JSON number, kept as its text so that no digit is lost. */
class OrdoNumber {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}
type OrdoJson = null | boolean | string | OrdoNumber | OrdoJson[] | Map<string, OrdoJson>;

const ORDO_INTS: Record<string, [bigint, bigint]> = {};
for (const bits of [8, 16, 32, 64, 128]) {
  const two = BigInt(2);
  ORDO_INTS["u" + bits] = [BigInt(0), two ** BigInt(bits) - BigInt(1)];
  ORDO_INTS["i" + bits] = [-(two ** BigInt(bits - 1)), two ** BigInt(bits - 1) - BigInt(1)];
}
const ORDO_BIG = new Set(["u64", "u128", "i64", "i128"]);

function ordoAt(path: string): string {
  return path ? "at `" + path + "`: " : "";
}

function ordoJoin(path: string, name: string): string {
  return path ? path + "." + name : name;
}

function ordoKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (value instanceof OrdoNumber) return "the number " + value.text;
  return typeof value;
}

function ordoDef(name: string): OrdoTypeDef {
  const def = ORDO_TYPES[name];
  if (def === undefined) throw new TypeError("type " + name + " is not defined");
  return def;
}

function ordoInt(shape: string, value: unknown, path: string): string {
  const big = ORDO_BIG.has(shape);
  let n: bigint;
  if (big) {
    if (typeof value !== "bigint") {
      throw new TypeError(ordoAt(path) + "expected " + shape + " (a bigint), found " + ordoKind(value));
    }
    n = value;
  } else {
    if (typeof value !== "number" || !Number.isInteger(value)) {
      throw new TypeError(ordoAt(path) + "expected " + shape + " (an integer number), found " + ordoKind(value));
    }
    n = BigInt(value);
  }
  const [low, high] = ORDO_INTS[shape];
  if (n < low || n > high) {
    throw new RangeError(ordoAt(path) + n + " is out of range for " + shape + " (" + low + " to " + high + ")");
  }
  return n.toString();
}

/** `value` as the JSON text serde reads for `shape`, checked. */
function ordoEncode(shape: OrdoShape, value: unknown, path: string): string {
  if (typeof shape === "string") {
    switch (shape) {
      case "unit":
        if (value !== null && value !== undefined) {
          throw new TypeError(ordoAt(path) + "expected () (null), found " + ordoKind(value));
        }
        return "null";
      case "bool":
        if (typeof value !== "boolean") throw new TypeError(ordoAt(path) + "expected bool, found " + ordoKind(value));
        return value ? "true" : "false";
      case "string":
        if (typeof value !== "string") throw new TypeError(ordoAt(path) + "expected String, found " + ordoKind(value));
        return JSON.stringify(value);
      case "char":
        if (typeof value !== "string" || Array.from(value).length !== 1) {
          throw new TypeError(ordoAt(path) + "expected char (a string of one character), found " + ordoKind(value));
        }
        return JSON.stringify(value);
      case "bytes":
        if (!(value instanceof Uint8Array)) {
          throw new TypeError(ordoAt(path) + "expected Bytes (a Uint8Array), found " + ordoKind(value));
        }
        return "[" + Array.from(value).join(",") + "]";
      case "f32":
      case "f64":
        if (typeof value !== "number") throw new TypeError(ordoAt(path) + "expected " + shape + ", found " + ordoKind(value));
        if (!Number.isFinite(value)) throw new RangeError(ordoAt(path) + value + " cannot be written in JSON");
        return JSON.stringify(value);
      default:
        return ordoInt(shape, value, path);
    }
  }
  if ("option" in shape) {
    return value === null || value === undefined ? "null" : ordoEncode(shape.option, value, path);
  }
  if ("seq" in shape || "array" in shape || "tuple" in shape) {
    if (!Array.isArray(value)) throw new TypeError(ordoAt(path) + "expected an array, found " + ordoKind(value));
    let items: OrdoShape[];
    if ("seq" in shape) {
      const item = shape.seq;
      items = value.map(() => item);
    } else if ("array" in shape) {
      const item = shape.array;
      items = Array.from({ length: shape.len }, () => item);
    } else {
      items = shape.tuple;
    }
    if (items.length !== value.length) {
      throw new RangeError(ordoAt(path) + "expected " + items.length + " items, found " + value.length);
    }
    const tuple = "tuple" in shape;
    return "[" + items.map((s, i) => ordoEncode(s, value[i], tuple ? ordoJoin(path, String(i)) : path + "[" + i + "]")).join(",") + "]";
  }
  if ("map" in shape) {
    if (!(value instanceof Map)) throw new TypeError(ordoAt(path) + "expected a Map, found " + ordoKind(value));
    const entries: string[] = [];
    for (const [k, v] of value) {
      const keyText = ordoKey(shape.map[0], k, path);
      entries.push(JSON.stringify(keyText) + ":" + ordoEncode(shape.map[1], v, ordoJoin(path, keyText)));
    }
    return "{" + entries.join(",") + "}";
  }
  return ordoEncodeNamed(shape.named, value, path);
}

/** A map key as serde_json writes it: always a string. */
function ordoKey(shape: OrdoShape, key: unknown, path: string): string {
  const at = path + " (a key)";
  if (typeof shape === "string") {
    if (shape in ORDO_INTS) return ordoInt(shape, key, at);
    if (shape === "string" || shape === "char") return JSON.parse(ordoEncode(shape, key, at)) as string;
    if (shape === "bool") return ordoEncode(shape, key, at);
  } else if ("named" in shape) {
    const def = ordoDef(shape.named);
    if ("struct" in def && typeof def.struct === "object" && "newtype" in def.struct) {
      return ordoKey(def.struct.newtype, key, path);
    }
    if ("variants" in def && typeof key === "string") {
      const encoded = ordoEncode(shape, key, at);
      return JSON.parse(encoded) as string;
    }
  }
  throw new TypeError(ordoAt(path) + "this map's keys cannot be written in JSON");
}

function ordoEncodeFields(fields: OrdoFields, value: unknown, path: string): string {
  if (fields === "unit") return "null";
  if ("newtype" in fields) return ordoEncode(fields.newtype, value, path);
  if ("tuple" in fields) return ordoEncode({ tuple: fields.tuple }, value, path);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(ordoAt(path) + "expected an object, found " + ordoKind(value));
  }
  const object = value as Record<string, unknown>;
  const known = new Set(fields.fields.map(([name]) => name));
  for (const name of Object.keys(object)) {
    if (!known.has(name)) throw new TypeError(ordoAt(path) + "unknown field `" + name + "`");
  }
  return "{" + fields.fields.map(([name, s]) => {
    if (!(name in object)) throw new TypeError(ordoAt(path) + "missing field `" + name + "`");
    return JSON.stringify(name) + ":" + ordoEncode(s, object[name], ordoJoin(path, name));
  }).join(",") + "}";
}

function ordoEncodeNamed(name: string, value: unknown, path: string): string {
  const def = ordoDef(name);
  if ("struct" in def) return ordoEncodeFields(def.struct, value, path);
  let tag: string;
  let content: unknown = null;
  if (typeof value === "string") {
    tag = value;
  } else if (typeof value === "object" && value !== null && !Array.isArray(value) && Object.keys(value).length === 1) {
    tag = Object.keys(value)[0];
    content = (value as Record<string, unknown>)[tag];
  } else {
    throw new TypeError(ordoAt(path) + "expected " + name + " as \"Variant\" or { Variant: ... }, found " + ordoKind(value));
  }
  const variant = def.variants.find(([variantName]) => variantName === tag);
  if (variant === undefined) throw new TypeError(ordoAt(path) + "unknown variant `" + tag + "` of " + name);
  const fields = variant[1];
  if (fields === "unit") {
    if (typeof value !== "string") throw new TypeError(ordoAt(path) + "variant `" + tag + "` has no fields: write \"" + tag + "\"");
    return JSON.stringify(tag);
  }
  if (typeof value === "string") throw new TypeError(ordoAt(path) + "variant `" + tag + "` has fields: write { " + tag + ": ... }");
  return "{" + JSON.stringify(tag) + ":" + ordoEncodeFields(fields, content, ordoJoin(path, tag)) + "}";
}

/** Reads JSON text, keeping numbers as their text. */
function ordoParse(text: string): OrdoJson {
  let at = 0;
  const fail = (what: string): never => {
    throw new SyntaxError("the result is not JSON: " + what + " at offset " + at);
  };
  const space = () => {
    while (at < text.length && " \t\n\r".includes(text[at])) at++;
  };
  const value = (): OrdoJson => {
    space();
    const c = text[at];
    if (c === "{") {
      at++;
      const object = new Map<string, OrdoJson>();
      space();
      if (text[at] === "}") {
        at++;
        return object;
      }
      for (;;) {
        space();
        const k = value();
        if (typeof k !== "string") fail("an object key that is not a string");
        space();
        if (text[at++] !== ":") fail("no `:`");
        object.set(k as string, value());
        space();
        const next = text[at++];
        if (next === "}") return object;
        if (next !== ",") fail("no `,` or `}`");
      }
    }
    if (c === "[") {
      at++;
      const items: OrdoJson[] = [];
      space();
      if (text[at] === "]") {
        at++;
        return items;
      }
      for (;;) {
        items.push(value());
        space();
        const next = text[at++];
        if (next === "]") return items;
        if (next !== ",") fail("no `,` or `]`");
      }
    }
    if (c === "\"") {
      let end = at + 1;
      while (end < text.length && text[end] !== "\"") end += text[end] === "\\" ? 2 : 1;
      const s = JSON.parse(text.slice(at, end + 1)) as string;
      at = end + 1;
      return s;
    }
    for (const [word, v] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return v;
      }
    }
    const number = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at));
    if (number === null) return fail("an unexpected character");
    at += number[0].length;
    return new OrdoNumber(number[0]);
  };
  const result = value();
  space();
  if (at !== text.length) fail("trailing characters");
  return result;
}

function ordoDecodeInt(shape: string, text: string, path: string): number | bigint {
  if (!/^-?(0|[1-9][0-9]*)$/.test(text)) throw new TypeError(ordoAt(path) + "expected " + shape + ", found " + text);
  const n = BigInt(text);
  const [low, high] = ORDO_INTS[shape];
  if (n < low || n > high) throw new RangeError(ordoAt(path) + text + " is out of range for " + shape);
  return ORDO_BIG.has(shape) ? n : Number(n);
}

/** A parsed JSON value of `shape`, checked and converted. */
function ordoDecode(shape: OrdoShape, value: OrdoJson, path: string): unknown {
  if (typeof shape === "string") {
    switch (shape) {
      case "unit":
        if (value !== null) throw new TypeError(ordoAt(path) + "expected null, found " + ordoKind(value));
        return null;
      case "bool":
        if (typeof value !== "boolean") throw new TypeError(ordoAt(path) + "expected bool, found " + ordoKind(value));
        return value;
      case "string":
      case "char":
        if (typeof value !== "string") throw new TypeError(ordoAt(path) + "expected " + shape + ", found " + ordoKind(value));
        return value;
      case "bytes":
        if (typeof value === "string") return new TextEncoder().encode(value);
        if (!Array.isArray(value)) throw new TypeError(ordoAt(path) + "expected Bytes, found " + ordoKind(value));
        return Uint8Array.from(value.map((item, i) => ordoDecode("u8", item, path + "[" + i + "]") as number));
      case "f32":
      case "f64":
        if (value === null) return NaN; // serde_json writes NaN and infinities as null
        if (!(value instanceof OrdoNumber)) throw new TypeError(ordoAt(path) + "expected " + shape + ", found " + ordoKind(value));
        return Number(value.text);
      default:
        if (!(value instanceof OrdoNumber)) throw new TypeError(ordoAt(path) + "expected " + shape + ", found " + ordoKind(value));
        return ordoDecodeInt(shape, value.text, path);
    }
  }
  if ("option" in shape) return value === null ? null : ordoDecode(shape.option, value, path);
  if ("seq" in shape || "array" in shape || "tuple" in shape) {
    if (!Array.isArray(value)) throw new TypeError(ordoAt(path) + "expected an array, found " + ordoKind(value));
    if ("seq" in shape) {
      const itemShape = shape.seq;
      return value.map((item, i) => ordoDecode(itemShape, item, path + "[" + i + "]"));
    }
    let items: OrdoShape[];
    if ("array" in shape) {
      const itemShape = shape.array;
      items = Array.from({ length: shape.len }, () => itemShape);
    } else {
      items = shape.tuple;
    }
    if (items.length !== value.length) throw new TypeError(ordoAt(path) + "expected " + items.length + " items, found " + value.length);
    return items.map((s, i) => ordoDecode(s, value[i], ordoJoin(path, String(i))));
  }
  if ("map" in shape) {
    if (!(value instanceof Map)) throw new TypeError(ordoAt(path) + "expected an object, found " + ordoKind(value));
    const out = new Map<unknown, unknown>();
    for (const [k, v] of value) out.set(ordoDecodeKey(shape.map[0], k, path), ordoDecode(shape.map[1], v, ordoJoin(path, k)));
    return out;
  }
  return ordoDecodeNamed(shape.named, value, path);
}

function ordoDecodeKey(shape: OrdoShape, key: string, path: string): unknown {
  if (typeof shape === "string") {
    if (shape in ORDO_INTS) return ordoDecodeInt(shape, key, path);
    if (shape === "bool") return key === "true";
    return key;
  }
  if ("named" in shape) {
    const def = ordoDef(shape.named);
    if ("struct" in def && typeof def.struct === "object" && "newtype" in def.struct) {
      return ordoDecodeKey(def.struct.newtype, key, path);
    }
    return ordoDecode(shape, key, path);
  }
  return key;
}

function ordoDecodeFields(fields: OrdoFields, value: OrdoJson, path: string): unknown {
  if (fields === "unit") {
    if (value !== null) throw new TypeError(ordoAt(path) + "expected null, found " + ordoKind(value));
    return null;
  }
  if ("newtype" in fields) return ordoDecode(fields.newtype, value, path);
  if ("tuple" in fields) return ordoDecode({ tuple: fields.tuple }, value, path);
  if (!(value instanceof Map)) throw new TypeError(ordoAt(path) + "expected an object, found " + ordoKind(value));
  const out: Record<string, unknown> = {};
  for (const [name, s] of fields.fields) {
    const field = value.get(name);
    out[name] = ordoDecode(s, field === undefined ? null : field, ordoJoin(path, name));
  }
  return out;
}

function ordoDecodeNamed(name: string, value: OrdoJson, path: string): unknown {
  const def = ordoDef(name);
  if ("struct" in def) return ordoDecodeFields(def.struct, value, path);
  let tag: string;
  let content: OrdoJson = null;
  if (typeof value === "string") {
    tag = value;
  } else if (value instanceof Map && value.size === 1) {
    const [entry] = Array.from(value.entries());
    tag = entry[0];
    content = entry[1];
  } else {
    throw new TypeError(ordoAt(path) + "expected " + name + " as \"Variant\" or { Variant: ... }, found " + ordoKind(value));
  }
  const variant = def.variants.find(([variantName]) => variantName === tag);
  if (variant === undefined) throw new TypeError(ordoAt(path) + "unknown variant `" + tag + "` of " + name);
  if (variant[1] === "unit") return tag;
  const decoded: Record<string, unknown> = {};
  decoded[tag] = ordoDecodeFields(variant[1], content, ordoJoin(path, tag));
  return decoded;
}

async function ordoCall(
  callJson: (procedure: string, args: string) => Promise<string>,
  procedure: string,
  params: Array<[string, OrdoShape, unknown]>,
  result: OrdoShape,
): Promise<unknown> {
  const args = "{" + params.map(([name, shape, value]) => JSON.stringify(name) + ":" + ordoEncode(shape, value, name)).join(",") + "}";
  return ordoDecode(result, ordoParse(await callJson(procedure, args)), "result");
}
"#;
