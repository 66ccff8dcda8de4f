//! Helpers for the randomized tests: a small deterministic generator and random JSON.

use serde_json::{Value, json};

/// xorshift64: deterministic, so a failing input can be reproduced from the seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A random JSON value using the field names and words the project's objects use.
pub fn random_value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth > 2 { 5 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.below(2) == 0),
        2 => json!(rng.next_u64() as i64),
        3 => json!(["", "bot", "isolate", "web", "approve", "deny", "\u{0}", "ä", "${x}"][rng.below(9)]),
        4 => json!(rng.next_u64() as f64 / 3.0),
        5 => Value::Array((0..rng.below(3)).map(|_| random_value(rng, depth + 1)).collect()),
        _ => {
            let keys = [
                "agent",
                "action",
                "target",
                "kind",
                "name",
                "namespace",
                "decision",
                "actionRequest",
                "promotion",
                "tier",
                "spec",
                "metadata",
                "parameters",
            ];
            Value::Object(
                (0..rng.below(4))
                    .map(|_| (keys[rng.below(keys.len())].to_string(), random_value(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}
