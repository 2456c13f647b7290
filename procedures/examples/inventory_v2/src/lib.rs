//! Version 2 of `examples/inventory`: `Item` gained a `price` field. Items
//! stored by version 1 do not decode as this `Item` (postcard has no field
//! names or lengths to tell a missing field by), so a node refuses to
//! deploy this over version 1 while the `items` table holds data.

include!("body.rs");
