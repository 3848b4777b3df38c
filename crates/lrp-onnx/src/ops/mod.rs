//! The operators, one file per family. Each file's `register` lists its operators and their handlers; a handler
//! translates one node whatever its inputs are (constants are folded, shapes that hold the batch size are carried
//! as symbols, values of the network become layers).

pub(crate) mod activation;
pub(crate) mod arith;
pub(crate) mod linear;
pub(crate) mod logic;
pub(crate) mod pool;
pub(crate) mod rec;
pub(crate) mod route;
pub(crate) mod shape;
pub(crate) mod transformer;
