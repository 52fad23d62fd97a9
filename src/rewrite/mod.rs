//! Config rewriting (DESIGN §3): when the DB primary or the server master changes, the files
//! other programs read are brought in line, then their services reloaded.

pub mod edit;
