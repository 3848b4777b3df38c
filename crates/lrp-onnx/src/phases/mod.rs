//! The import's phases, in the order [`crate::import`] runs them: decode → initializers (external data) →
//! pattern fusion (in [`crate::patterns`] and [`crate::islands`]) → signature → walk → prune and build.

pub(crate) mod decode;
pub(crate) mod initializers;
pub(crate) mod prune;
pub(crate) mod signature;
pub(crate) mod walk;
