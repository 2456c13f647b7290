//! What `#[derive(Schema)]` expands to calls. Not a stable API.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Display;

use crate::{Fields, Registry, Shape, TypeBody, TypeDef};

pub use alloc::string::String as StdString;
pub use alloc::vec::Vec as StdVec;
pub use alloc::{format, vec};

/// Registers the type `id` unless it already is, and returns its shape.
/// A placeholder goes in first so that a recursive type, asking for its
/// own shape while its fields are described, finds itself and stops.
pub fn register_type(
    registry: &mut Registry,
    id: String,
    define: impl FnOnce(&mut Registry) -> TypeDef,
) -> Shape {
    if !registry.types.contains_key(&id) {
        let placeholder = TypeDef {
            name: String::new(),
            doc: String::new(),
            body: TypeBody::Struct(Fields::Unit),
        };
        registry.types.insert(id.clone(), placeholder);
        let def = define(registry);
        registry.types.insert(id.clone(), def);
    }
    Shape::Named(id)
}

/// `base<arg, ...>` with each argument rendered by id (unique) or by short
/// name (readable), as `by_id` says.
pub fn generic_name(base: &str, args: &[GenericArg], registry: &Registry, by_id: bool) -> String {
    if args.is_empty() {
        return base.to_string();
    }
    let rendered: Vec<String> = args
        .iter()
        .map(|arg| match arg {
            GenericArg::Type(shape) if by_id => crate::render_id(shape, registry),
            GenericArg::Type(shape) => crate::render(shape, registry),
            GenericArg::Const(value) => value.clone(),
        })
        .collect();
    alloc::format!("{base}<{}>", rendered.join(", "))
}

pub enum GenericArg {
    Type(Shape),
    Const(String),
}

pub fn const_arg(value: impl Display) -> GenericArg {
    GenericArg::Const(value.to_string())
}
