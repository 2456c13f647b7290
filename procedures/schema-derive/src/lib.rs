extern crate proc_macro;
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(_input: proc_macro::TokenStream) -> proc_macro::TokenStream { proc_macro::TokenStream::new() }
