//! The life of a block after it is made: expiry (B13, B44).

mod expiry;
