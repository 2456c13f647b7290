//! `Schema` for the standard types serde serializes.
//!
//! `HashMap`/`HashSet` are deliberately left out: their iteration order is
//! not deterministic, so a procedure must not store or return them.

use alloc::borrow::{Cow, ToOwned};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use crate::{Registry, Schema, Shape};

macro_rules! primitive {
    ($($ty:ty => $shape:ident),* $(,)?) => {$(
        impl Schema for $ty {
            fn shape(_: &mut Registry) -> Shape {
                Shape::$shape
            }
        }
    )*};
}

primitive! {
    () => Unit, bool => Bool,
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128,
    f32 => F32, f64 => F64, char => Char, String => String, str => String,
}

// serde serializes usize/isize as u64/i64 (postcard: varints of the
// platform width on decode, but the encoding of a value that fits is the
// same). A procedure is wasm32, so a client's 64-bit value above u32::MAX
// would not decode there: prefer fixed-width integers in contracts.
impl Schema for usize {
    fn shape(_: &mut Registry) -> Shape {
        Shape::U64
    }
}

impl Schema for isize {
    fn shape(_: &mut Registry) -> Shape {
        Shape::I64
    }
}

macro_rules! transparent {
    ($($ty:ident),*) => {$(
        impl<T: Schema + ?Sized> Schema for $ty<T> {
            fn shape(registry: &mut Registry) -> Shape {
                T::shape(registry)
            }
        }
    )*};
}

transparent!(Box, Rc, Arc);

impl<T: Schema + ?Sized> Schema for &T {
    fn shape(registry: &mut Registry) -> Shape {
        T::shape(registry)
    }
}

impl<T: Schema + ?Sized> Schema for &mut T {
    fn shape(registry: &mut Registry) -> Shape {
        T::shape(registry)
    }
}

impl<T: Schema + ToOwned + ?Sized> Schema for Cow<'_, T> {
    fn shape(registry: &mut Registry) -> Shape {
        T::shape(registry)
    }
}

// serde: a unit struct (nothing in postcard, null in JSON).
impl<T: ?Sized> Schema for core::marker::PhantomData<T> {
    fn shape(_: &mut Registry) -> Shape {
        Shape::Unit
    }
}

impl<T: Schema> Schema for Option<T> {
    fn shape(registry: &mut Registry) -> Shape {
        Shape::Option(Box::new(T::shape(registry)))
    }
}

macro_rules! sequence {
    ($($ty:ty),*) => {$(
        impl<T: Schema> Schema for $ty {
            fn shape(registry: &mut Registry) -> Shape {
                Shape::Seq(Box::new(T::shape(registry)))
            }
        }
    )*};
}

sequence!(Vec<T>, VecDeque<T>, BTreeSet<T>, [T]);

impl<K: Schema, V: Schema> Schema for BTreeMap<K, V> {
    fn shape(registry: &mut Registry) -> Shape {
        let key = Box::new(K::shape(registry));
        let value = Box::new(V::shape(registry));
        Shape::Map { key, value }
    }
}

impl<T: Schema, const N: usize> Schema for [T; N] {
    fn shape(registry: &mut Registry) -> Shape {
        // serde implements arrays only up to 32, so N always fits.
        let len = u32::try_from(N).unwrap_or(u32::MAX);
        Shape::Array {
            item: Box::new(T::shape(registry)),
            len,
        }
    }
}

macro_rules! tuple {
    ($($name:ident)+) => {
        impl<$($name: Schema),+> Schema for ($($name,)+) {
            fn shape(registry: &mut Registry) -> Shape {
                Shape::Tuple(vec![$($name::shape(registry)),+])
            }
        }
    };
}

tuple!(A);
tuple!(A B);
tuple!(A B C);
tuple!(A B C D);
tuple!(A B C D E);
tuple!(A B C D E F);
tuple!(A B C D E F G);
tuple!(A B C D E F G H);
tuple!(A B C D E F G H I);
tuple!(A B C D E F G H I J);
tuple!(A B C D E F G H I J K);
tuple!(A B C D E F G H I J K L);
