//! `lookout schema [checks|alerts|probes|page]`: prints a JSON Schema.

use std::process::ExitCode;

use crate::schema::{SchemaKind, schema_text};

pub fn run(kind: SchemaKind) -> ExitCode {
    println!("{}", schema_text(kind));
    ExitCode::SUCCESS
}
