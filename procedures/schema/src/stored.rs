//! Schemas in a module: their own encoding, and their own schema, so that
//! schema bytes from a (possibly hostile) module are checked before serde
//! recursion sees them.

use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::register_type;
use crate::{
    Field, Fields, Param, ProcedureSchema, Registry, Schema, Shape, TableSchema, TypeBody, TypeDef,
    Variant,
};

/// Encodes a schema value (e.g. a [`ProcedureSchema`]) as postcard.
pub fn encode_schema<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Serializing these types into a Vec cannot fail: no maps with
    // non-serializable keys, no sequences of unknown length.
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decodes a schema value, first checking the bytes against the value's
/// own schema, so that hostile bytes (nesting shapes thousands deep, which
/// would overflow the stack in serde) are refused without recursion.
/// Validate the result with [`Registry::validate_with_roots`] (or
/// `ProcedureSchema::validate`) before checking data against it.
pub fn decode_schema<T: Schema + DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut registry = Registry::new();
    let shape = T::shape(&mut registry);
    crate::check_postcard(&shape, &registry, bytes).map_err(|e| e.to_string())?;
    postcard::from_bytes(bytes).map_err(|e| e.to_string())
}

impl ProcedureSchema {
    /// [`Registry::validate_with_roots`] for the parameters and result.
    pub fn validate(&self) -> Result<(), String> {
        let mut roots: Vec<&Shape> = self.params.iter().map(|p| &p.shape).collect();
        roots.push(&self.result);
        self.types.validate_with_roots(&roots)
    }
}

impl TableSchema {
    /// [`Registry::validate_with_roots`] for the key and value.
    pub fn validate(&self) -> Result<(), String> {
        self.types.validate_with_roots(&[&self.key, &self.value])
    }
}

fn field(name: &str, shape: Shape) -> Field {
    Field {
        name: name.to_string(),
        doc: String::new(),
        shape,
    }
}

fn variant(name: &str, fields: Fields) -> Variant {
    Variant {
        name: name.to_string(),
        doc: String::new(),
        fields,
    }
}

fn def(name: &str, body: TypeBody) -> TypeDef {
    TypeDef {
        name: name.to_string(),
        doc: String::new(),
        body,
    }
}

fn named_struct(name: &str, fields: Vec<Field>) -> TypeDef {
    def(name, TypeBody::Struct(Fields::Named(fields)))
}

fn seq(item: Shape) -> Shape {
    Shape::Seq(Box::new(item))
}

const SHAPE_ID: &str = "ordo_schema::Shape";

impl Schema for Shape {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, SHAPE_ID.to_string(), |_| {
            let me = Shape::Named(SHAPE_ID.to_string());
            let units = [
                "Unit", "Bool", "U8", "U16", "U32", "U64", "U128", "I8", "I16", "I32", "I64",
                "I128", "F32", "F64", "Char", "String", "Bytes",
            ];
            let mut variants: Vec<Variant> =
                units.iter().map(|n| variant(n, Fields::Unit)).collect();
            variants.extend([
                variant("Option", Fields::Newtype(me.clone())),
                variant("Seq", Fields::Newtype(me.clone())),
                variant(
                    "Map",
                    Fields::Named(vec![field("key", me.clone()), field("value", me.clone())]),
                ),
                variant("Tuple", Fields::Newtype(seq(me.clone()))),
                variant(
                    "Array",
                    Fields::Named(vec![field("item", me.clone()), field("len", Shape::U32)]),
                ),
                variant("Named", Fields::Newtype(Shape::String)),
            ]);
            def("Shape", TypeBody::Enum(variants))
        })
    }
}

impl Schema for Field {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::Field".to_string(), |registry| {
            let shape = Shape::shape(registry);
            named_struct(
                "Field",
                vec![
                    field("name", Shape::String),
                    field("doc", Shape::String),
                    field("shape", shape),
                ],
            )
        })
    }
}

impl Schema for Fields {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::Fields".to_string(), |registry| {
            let shape = Shape::shape(registry);
            let field_shape = Field::shape(registry);
            def(
                "Fields",
                TypeBody::Enum(vec![
                    variant("Unit", Fields::Unit),
                    variant("Newtype", Fields::Newtype(shape.clone())),
                    variant("Tuple", Fields::Newtype(seq(shape))),
                    variant("Named", Fields::Newtype(seq(field_shape))),
                ]),
            )
        })
    }
}

impl Schema for Variant {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::Variant".to_string(), |registry| {
            let fields = Fields::shape(registry);
            named_struct(
                "Variant",
                vec![
                    field("name", Shape::String),
                    field("doc", Shape::String),
                    field("fields", fields),
                ],
            )
        })
    }
}

impl Schema for TypeBody {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::TypeBody".to_string(), |registry| {
            let fields = Fields::shape(registry);
            let variant_shape = Variant::shape(registry);
            def(
                "TypeBody",
                TypeBody::Enum(vec![
                    variant("Struct", Fields::Newtype(fields)),
                    variant("Enum", Fields::Newtype(seq(variant_shape))),
                ]),
            )
        })
    }
}

impl Schema for TypeDef {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::TypeDef".to_string(), |registry| {
            let body = TypeBody::shape(registry);
            named_struct(
                "TypeDef",
                vec![
                    field("name", Shape::String),
                    field("doc", Shape::String),
                    field("body", body),
                ],
            )
        })
    }
}

impl Schema for Registry {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::Registry".to_string(), |registry| {
            let types = Shape::Map {
                key: Box::new(Shape::String),
                value: Box::new(TypeDef::shape(registry)),
            };
            named_struct("Registry", vec![field("types", types)])
        })
    }
}

impl Schema for Param {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(registry, "ordo_schema::Param".to_string(), |registry| {
            let shape = Shape::shape(registry);
            named_struct(
                "Param",
                vec![field("name", Shape::String), field("shape", shape)],
            )
        })
    }
}

impl Schema for ProcedureSchema {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(
            registry,
            "ordo_schema::ProcedureSchema".to_string(),
            |registry| {
                let params = seq(Param::shape(registry));
                let shape = Shape::shape(registry);
                let types = Registry::shape(registry);
                named_struct(
                    "ProcedureSchema",
                    vec![
                        field("name", Shape::String),
                        field("doc", Shape::String),
                        field("params", params),
                        field("result", shape),
                        field("read_only", Shape::Bool),
                        field("types", types),
                    ],
                )
            },
        )
    }
}

impl Schema for TableSchema {
    fn shape(registry: &mut Registry) -> Shape {
        register_type(
            registry,
            "ordo_schema::TableSchema".to_string(),
            |registry| {
                let shape = Shape::shape(registry);
                let types = Registry::shape(registry);
                named_struct(
                    "TableSchema",
                    vec![
                        field("name", Shape::String),
                        field("doc", Shape::String),
                        field("key", shape.clone()),
                        field("value", shape),
                        field("types", types),
                    ],
                )
            },
        )
    }
}
