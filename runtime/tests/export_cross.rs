//! Cross export: the MLP as an aarch64 object, always; linked with Debian's cross compiler
//! and run under qemu-user to compare with the host's JIT, when those tools are installed
//! (`apt-get install gcc-aarch64-linux-gnu qemu-user`; `.ci/run` tries). Without them the
//! second part prints a note and checks only the object.

use std::process::Command;

use kiln_compiler::Data;
use kiln_compiler::codegen::Options;
use kiln_compiler::prelude::*;
use kiln_runtime::export::{ExportOptions, Model, Target};
use kiln_runtime::function_with;
use support::mlp;

mod support;

const TRIPLE: &str = "aarch64-unknown-linux-gnu";

fn available(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success())
}

const C_TEST: &str = r#"#include <stdio.h>
#include <stdint.h>
#include "mlp.h"
int main(void) {
    static float input[1000 * 2], output[1000 * 2];
    static unsigned char scratch[1 << 20];
    uint64_t state = 7;
    for (int i = 0; i < 2000; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        input[i] = (float)((double)(state >> 11) / 9007199254740992.0 * 6.0 - 3.0);
    }
    if (mlp_scratch_bytes(1000) > sizeof scratch) return 3;
    int status = mlp_infer(input, 2000, 1000, output, 2000, scratch, sizeof scratch);
    if (status) return 10 + status;
    printf("%d %d\n", mlp_infer(NULL, 2, 1, output, 2, scratch, sizeof scratch),
           mlp_infer(input, 2, -5, output, 2, scratch, sizeof scratch));
    for (int i = 0; i < 2000; i++) printf("%u\n", *(unsigned *)&output[i]);
    return 0;
}
"#;

/// The inputs C_TEST draws.
fn inputs() -> Vec<f32> {
    let mut state: u64 = 7;
    (0..2000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / 9007199254740992.0 * 6.0 - 3.0) as f32
        })
        .collect()
}

#[test]
fn an_aarch64_object_is_emitted_and_under_qemu_matches_the_jit() {
    let g = Graph::new();
    let (x, y) = mlp(&g).unwrap();
    let params = ParamStore::init(&g, 11);
    let options = ExportOptions { name: "mlp".into(), target: Target::triple(TRIPLE) };
    let artifact = Model::new(&g, x, y).export(&params, &options).unwrap();
    let object = artifact.object();
    assert_eq!(&object[..4], b"\x7fELF");
    assert_eq!(object[4], 2, "ELFCLASS64");
    assert_eq!(u16::from_le_bytes([object[16], object[17]]), 1, "ET_REL");
    assert_eq!(u16::from_le_bytes([object[18], object[19]]), 183, "EM_AARCH64");
    assert!(artifact.header().contains(TRIPLE));
    let error = artifact.link_executable(&std::env::temp_dir()).unwrap_err();
    assert!(error.to_string().contains("link_executable_with"), "{error}");

    let (cc, qemu) = ("aarch64-linux-gnu-gcc", "qemu-aarch64");
    if !available(cc, "--version") || !available(qemu, "--version") {
        println!("note: {cc} or {qemu} is not installed; checked the aarch64 object only, did not run it");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kiln-export-test-cross-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    artifact.write_static_library(&dir).unwrap();
    std::fs::write(dir.join("test.c"), C_TEST).unwrap();
    let args = ["-O2", "-static", "-o", "test", "test.c", "-L.", "-lmlp"];
    let built = Command::new(cc).current_dir(&dir).args(args).output().unwrap();
    assert!(built.status.success(), "{cc}: {}", String::from_utf8_lossy(&built.stderr));
    let ran = Command::new(qemu).arg(dir.join("test")).output().unwrap();
    assert!(ran.status.success(), "under qemu: {} {}", ran.status, String::from_utf8_lossy(&ran.stderr));
    let stdout = String::from_utf8_lossy(&ran.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("1 2"), "error codes under qemu");
    let printed: Vec<f32> = lines.map(|l| f32::from_bits(l.parse().unwrap())).collect();

    // aarch64 fuses multiply-adds: so does the host's JIT when the host has FMA (then the bits
    // agree exactly); without FMA on the host, within a few float roundings.
    let options = Options { gemm: false, fma: true, ..Options::default() };
    let mut f = function_with(&g, &[x], &[y], &[], &options).unwrap();
    f.set_params(&params).unwrap();
    let out = f.call(&[Value::f32([1000, 2], inputs())]).unwrap();
    let Data::F32(expected) = out[0].data() else { panic!("f32 output") };
    let host_fma = Target { cpu: kiln_runtime::export::Cpu::Host, ..Target::host() }.fma().unwrap();
    for (got, want) in printed.iter().zip(expected) {
        if host_fma {
            assert_eq!(got.to_bits(), want.to_bits(), "{got} against the JIT's {want}");
        } else {
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{got} against the JIT's {want}");
        }
    }
    assert_eq!(printed.len(), 2000);
    let _ = std::fs::remove_dir_all(&dir);
}
