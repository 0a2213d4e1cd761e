//! Fuzzing the checkpoint loader and the safetensors reading path with proptest (stable Rust,
//! part of the normal test suite): random bytes, truncations, bit flips, overwritten bytes and
//! spliced-in bytes of valid checkpoint files. Each input is a load error or a valid load, never
//! a panic; a damaged file that loads must load as the very checkpoint it was made from.
//!
//! `KILN_FUZZ_CASES` sets the cases per property (1,000 by default, a few seconds in all);
//! failures print the input's seed, and proptest keeps them in `proptest-regressions/`.

use std::path::Path;

use kiln_compiler::{ParamStore, Value};
use kiln_runtime::Checkpoint;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
}

/// The valid files mutations start from: tensors of every dtype kiln stores, an empty tensor,
/// a scalar, optimizer state, and configs of several JSON kinds.
fn seeds() -> &'static [(Checkpoint, Vec<u8>)] {
    static SEEDS: std::sync::OnceLock<Vec<(Checkpoint, Vec<u8>)>> = std::sync::OnceLock::new();
    SEEDS.get_or_init(make_seeds)
}

fn make_seeds() -> Vec<(Checkpoint, Vec<u8>)> {
    let mut plain = ParamStore::new();
    plain.set("w", Value::f32([2, 3], vec![1.0, -2.0, 0.5, f32::NAN, 0.0, -0.0]));
    plain.set("optimizer.adam.m.w", Value::f32([2, 3], vec![0.25; 6]));
    let mut mixed = ParamStore::new();
    mixed.set("layer.bias", Value::f64([3], vec![1e300, -1e-300, 7.0]));
    mixed.set("counts", Value::i64([2], vec![i64::MAX, i64::MIN]));
    mixed.set("index", Value::i32([1], vec![-1]));
    mixed.set("mask", Value::new(vec![3], kiln_compiler::Data::Bool(vec![true, false, true])).expect("a mask"));
    mixed.set("empty", Value::f32([0, 4], vec![]));
    mixed.set("scalar", Value::f32([], vec![3.5]));
    let checkpoints = [
        Checkpoint { params: plain, step: 20, config: serde_json::json!({ "width": 8, "name": "mlp" }) },
        Checkpoint { params: mixed, step: u64::MAX, config: serde_json::json!([1, "two", null, 3.5]) },
        Checkpoint { params: ParamStore::new(), step: 0, config: serde_json::Value::Null },
    ];
    checkpoints
        .into_iter()
        .map(|checkpoint| {
            let bytes = checkpoint.to_bytes().expect("a seed checkpoint");
            (checkpoint, bytes)
        })
        .collect()
}

/// Loads `bytes` through both readers; neither may panic (proptest reports a panic as a failure).
fn load(bytes: &[u8]) -> Option<Checkpoint> {
    if let Ok(tensors) = safetensors::SafeTensors::deserialize(bytes) {
        for (_, view) in tensors.tensors() {
            let _ = (view.dtype(), view.shape(), view.data().len());
        }
    }
    Checkpoint::from_bytes(Path::new("fuzzed.safetensors"), bytes).ok()
}

/// Same contents, NaN included (checkpoints compare with `==`, where NaN differs from itself).
fn same(a: &Checkpoint, b: &Checkpoint) -> bool {
    let bits = |c: &Checkpoint| -> Vec<(String, Vec<usize>, Vec<u64>)> {
        let mut all: Vec<_> = c
            .params
            .iter()
            .map(|(n, v)| (n.to_string(), v.shape().to_vec(), v.to_f64_vec().iter().map(|x| x.to_bits()).collect()))
            .collect();
        all.sort();
        all
    };
    a.step == b.step && a.config == b.config && bits(a) == bits(b)
}

/// One way of damaging a file.
#[derive(Clone, Debug)]
enum Damage {
    Truncate(usize),
    FlipBits(Vec<usize>),
    Overwrite(usize, Vec<u8>),
    Splice(usize, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        proptest::collection::vec(any::<usize>(), 1..8).prop_map(Damage::FlipBits),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Damage::Overwrite(at, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, b)| Damage::Splice(at, b)),
    ]
}

fn apply(mut bytes: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let len = bytes.len();
    match damage {
        Damage::Truncate(at) => bytes.truncate(at % len),
        Damage::FlipBits(bits) => {
            for bit in bits {
                bytes[(bit / 8) % len] ^= 1 << (bit % 8);
            }
        }
        Damage::Overwrite(at, new) => {
            for (i, byte) in new.iter().enumerate() {
                bytes[(at + i) % len] = *byte;
            }
        }
        Damage::Splice(at, new) => {
            let at = at % (len + 1);
            bytes.splice(at..at, new.iter().copied());
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Random bytes, with and without a plausible header length in front: an error, no panic.
    #[test]
    fn random_bytes_are_an_error_or_a_load_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        header in proptest::option::of(0u64..600),
    ) {
        let mut file = header.map(|n| n.to_le_bytes().to_vec()).unwrap_or_default();
        file.extend(&bytes);
        load(&file);
    }

    /// Random JSON-ish headers in a well-formed frame reach the header parser's deeper paths.
    #[test]
    fn random_headers_in_a_valid_frame_are_an_error_or_a_load(
        header in "\\{(\"[a-z_]{0,10}\":(\\{\"dtype\":\"(F32|F64|I64|BOOL|U8)\",\"shape\":\\[[0-9,]{0,12}\\],\"data_offsets\":\\[[0-9]{1,3},[0-9]{1,3}\\]\\}|\\{\"kiln\":\"[ -~]{0,40}\"\\}),?){0,3}\\}",
        data in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header.as_bytes());
        file.extend(&data);
        load(&file);
    }

    /// Damaged valid files: an error, or the original checkpoint exactly.
    #[test]
    fn damaged_checkpoints_are_an_error_or_the_original(seed in 0usize..3, damage in damage()) {
        let seeds = seeds();
        let (original, bytes) = &seeds[seed];
        let damaged = apply(bytes.clone(), &damage);
        if let Some(loaded) = load(&damaged) {
            prop_assert!(same(&loaded, original), "{damage:?} loaded as another checkpoint: {loaded:?}");
        }
    }
}

/// The seeds themselves load as what was saved (the property above starts from whole files).
#[test]
fn the_seed_files_load_as_saved() {
    for (checkpoint, bytes) in seeds() {
        let loaded = load(bytes).expect("a whole file loads");
        assert!(same(&loaded, checkpoint), "{loaded:?} is not {checkpoint:?}");
    }
}
