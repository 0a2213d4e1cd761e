//! Crash safety of checkpoint writes: a child process saves checkpoints in a loop and is
//! killed with SIGKILL at random moments; after every kill the checkpoint on disk loads, whole,
//! and holds exactly what was saved at its step.
//!
//! The child is this test binary run again with `KILN_CHECKPOINT_WRITER` naming the file; the
//! test function then acts as the writer instead of the parent. `KILN_TORTURE_KILLS` sets the
//! number of kills (100 by default).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kiln_compiler::{ParamStore, Value};
use kiln_runtime::Checkpoint;

const WRITER: &str = "KILN_CHECKPOINT_WRITER";

/// What the writer saves at `step`: values that depend on the step, so a file that mixed two
/// saves, or lost a part, would not match.
fn checkpoint_at(step: u64) -> Checkpoint {
    let mut params = ParamStore::new();
    let values = |seed: u64, n: usize| -> Vec<f32> {
        (0..n).map(|i| ((seed.wrapping_mul(2_654_435_761) ^ (i as u64 * 40_503)) % 10_007) as f32 / 97.0).collect()
    };
    params.set("layer.weight", Value::f32([64, 256], values(step, 64 * 256)));
    params.set("layer.bias", Value::f32([64], values(step + 1, 64)));
    params.set("optimizer.adam.m.layer.weight", Value::f32([64, 256], values(step + 2, 64 * 256)));
    Checkpoint { params, step, config: serde_json::json!({ "written at step": step }) }
}

/// The child: saves checkpoint after checkpoint, continuing from the step on disk, until killed.
fn write_forever(path: &Path) -> ! {
    let mut step = Checkpoint::load(path).map_or(0, |c| c.step);
    loop {
        step += 1;
        if let Err(error) = checkpoint_at(step).save(path) {
            eprintln!("the writer failed: {error}");
            std::process::exit(3);
        }
    }
}

/// A small xorshift generator: the kill moments need no statistics, only variety.
struct Moments(u64);

impl Moments {
    fn next_micros(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

#[test]
fn a_writer_killed_at_random_moments_always_leaves_a_checkpoint_that_loads() {
    if let Some(path) = std::env::var_os(WRITER) {
        write_forever(Path::new(&path));
    }
    let kills: u32 = std::env::var("KILN_TORTURE_KILLS").ok().and_then(|n| n.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("kiln-crash-safety-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let path = dir.join("model.safetensors");
    checkpoint_at(0).save(&path).expect("the first checkpoint");
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
    let mut moments = Moments(seed | 1);
    let mut last_step = 0;
    let mut advanced = 0;
    for kill in 0..kills {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "a_writer_killed_at_random_moments_always_leaves_a_checkpoint_that_loads",
                "--test-threads=1",
            ])
            .env(WRITER, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the writer starts");
        std::thread::sleep(Duration::from_micros(2_000 + moments.next_micros(20_000)));
        // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no cleanup runs.
        child.kill().expect("the writer is killed");
        let status = child.wait().expect("the writer ends");
        assert!(status.code().is_none(), "kill {kill}: the writer exited by itself ({status}) instead of being killed");
        let loaded = Checkpoint::load(&path).unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): {e}"));
        assert!(loaded.step >= last_step, "kill {kill}: the step went back from {last_step} to {}", loaded.step);
        assert_eq!(
            loaded,
            checkpoint_at(loaded.step),
            "kill {kill}: the checkpoint of step {} is altered",
            loaded.step
        );
        advanced += u32::from(loaded.step > last_step);
        last_step = loaded.step;
    }
    // The kills must have landed while writes were going on, not only before the first one.
    assert!(kills < 10 || advanced > 0, "no writer ever finished a checkpoint in {kills} runs");
    let _ = std::fs::remove_dir_all(&dir);
}
