//! `firegate policy check` and `firegate policy test`.
