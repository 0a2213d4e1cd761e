//! W1 and W4 as data-parallel runs across the ranks `mpirun` started (`--features mpi`).
//!
//! In: the ranks `mpirun` started. Out: on rank 0, one JSON line per workload with the scaling
//! efficiency.
//!
//! Every rank compiles its shard of the workload (W4: its rows of each global batch of 128;
//! W1: its `10000 / N` points drawn in the graph, the rank in the draw's counter) with the
//! gradients summed across ranks inside the step, and runs the same number of steps as the
//! single-process benchmark. Then rank 0 alone runs the single-process workload at the same
//! thread count, and prints one JSON line: the usual fields with `"ranks":N`, the
//! single-rank rate and the scaling efficiency `rate(N) / (N · rate(1))`.

use std::time::{Duration, Instant};

use kiln::distributed::Ranks;
use kiln::prelude::*;
use kiln_bench::{self as workloads, Shard};
use kiln_runtime::function_reducing;

/// True when this process is a rank of an MPI job (OpenMPI's, MPICH's or a PMIx launcher's).
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|name| std::env::var_os(name).is_some())
}

/// Runs `workload` (`w1` or `w4`) across the ranks, then once on rank 0 alone.
pub fn run(workload: &str, threads: usize) -> Result<()> {
    let mut ranks = Ranks::init()?;
    // Rank 0's single-process run happens while the others wait at a barrier.
    ranks.set_timeout(Duration::from_secs(600));
    let shard = Shard { rank: ranks.rank(), ranks: ranks.size() };
    let (steps, w1) = match workload {
        "w1" => (1024, true),
        "w4" => (300, false),
        other => {
            let detail = format!("`{other}` does not run across ranks; choose w1 or w4");
            return Err(Error::Distributed { rank: shard.rank, detail });
        }
    };
    let started = Instant::now();
    let g = Graph::new();
    let (mut step, gradients) =
        if w1 { workloads::seed_mlp_shard(&g, 10_000, false, shard)? } else { workloads::wide_mlp_shard(&g, shard)? };
    let mut f = function_reducing(&g, &step.inputs, &step.outputs, &step.updates, &gradients, &Default::default())?;
    f.set_reducer(ranks.reducer());
    ranks.barrier("starting the timed steps")?;
    let (compile_ms, seconds, last) = crate::train(&mut f, started, steps, &mut step.feed)?;
    let mut loss = [last[0].item().unwrap_or(f64::NAN)];
    ranks.mean(&mut loss, "the mean of the final loss")?;
    if ranks.rank() == 0 {
        let quality = if w1 { held_out_accuracy(&f)? } else { loss[0] };
        let single = single_rank(w1, steps)?;
        let rate = steps as f64 / seconds;
        let efficiency = rate / (ranks.size() as f64 * single);
        println!(
            r#"{{"workload":"{workload}","ranks":{},"threads":{threads},"compile_ms":{compile_ms:.2},"steps":{steps},"seconds":{seconds:.4},"steps_per_s":{rate:.1},"quality":{quality:.6},"single_rank_steps_per_s":{single:.1},"scaling_efficiency":{efficiency:.3}}}"#,
            ranks.size()
        );
    }
    ranks.barrier("rank 0's single-rank run")
}

/// W1's held-out accuracy with `f`'s params.
fn held_out_accuracy(f: &Function) -> Result<f64> {
    let e = Graph::new();
    let mut accuracy = workloads::seed_mlp_accuracy(&e)?;
    let mut evaluate = accuracy.compile(&e)?;
    evaluate.set_params(&f.params())?;
    Ok(evaluate.call(accuracy.feed.at(0))?[0].item().unwrap_or(f64::NAN))
}

/// Steps per second of the single-process workload on this rank.
fn single_rank(w1: bool, steps: usize) -> Result<f64> {
    let g = Graph::new();
    let mut step = if w1 { workloads::seed_mlp(&g, 10_000, false)? } else { workloads::wide_mlp(&g)? };
    let mut f = step.compile(&g)?;
    let (_, seconds, _) = crate::train(&mut f, Instant::now(), steps, &mut step.feed)?;
    Ok(steps as f64 / seconds)
}
