//! The gradient sums of a data-parallel step, without MPI: a reducer standing for a second
//! process whose gradients are all zero, so the mean the update reads is half this process's
//! gradient. SGD then takes exactly the step of half the learning rate.

use kiln_compiler::prelude::*;
use kiln_runtime::function_reducing;
use kiln_runtime::reduce::Reducer;

/// Two processes, the other contributing zeros; records the order of starts and waits.
struct ZeroTwin {
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Reducer for ZeroTwin {
    fn ranks(&self) -> usize {
        2
    }

    unsafe fn start(&mut self, _data: *mut f32, _len: usize, name: &str) -> kiln_compiler::Result<usize> {
        let mut events = self.events.lock().expect("events");
        events.push(format!("start {name}"));
        Ok(events.len() - 1)
    }

    fn wait(&mut self, ticket: usize) -> kiln_compiler::Result<()> {
        let mut events = self.events.lock().expect("events");
        let started = events[ticket].replacen("start", "wait", 1);
        events.push(started);
        Ok(())
    }
}

fn step(reduced: bool, lr: f64) -> Result<(ParamStore, Vec<String>)> {
    let g = Graph::new();
    let x = g.input("x", [8, 4])?;
    let labels = g.typed_input("labels", [8], DType::I64)?;
    let first = layers::Linear::new(&g, "first", 4, 6)?;
    let second = layers::Linear::new(&g, "second", 6, 3)?;
    let loss = layers::cross_entropy(second.forward(layers::relu(first.forward(x)?)?)?, labels)?;
    let params = [first.weight, first.bias, second.weight, second.bias];
    let grads = g.grad(loss, &params)?;
    let updates: Vec<_> = params.iter().zip(&grads).map(|(&p, &d)| (p, p - d * lr)).collect();
    let names = ["first.weight", "first.bias", "second.weight", "second.bias"];
    let sums: Vec<(String, Tensor<'_>)> = names.iter().zip(&grads).map(|(n, &d)| (n.to_string(), d)).collect();
    let sums = if reduced { sums } else { vec![] };
    let mut f = function_reducing(&g, &[x, labels], &[loss], &updates, &sums, &Default::default())?;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    f.set_reducer(Box::new(ZeroTwin { events: events.clone() }));
    let features: Vec<f32> = (0..32).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    f.call(&[Value::f32([8, 4], features), Value::i64([8], vec![0, 1, 2, 0, 1, 2, 0, 1])])?;
    let events = events.lock().expect("events").clone();
    Ok((f.params(), events))
}

#[test]
fn the_update_reads_the_mean_of_the_gradients_across_processes() -> Result<()> {
    let (reduced, events) = step(true, 0.5)?;
    let (half_rate, no_events) = step(false, 0.25)?;
    assert!(no_events.is_empty(), "a function without reduced gradients summed {no_events:?}");
    for (name, value) in half_rate.iter() {
        assert_eq!(reduced.get(name), Some(value), "param `{name}`");
    }
    // Every gradient is summed once, and waited for after it starts.
    assert_eq!(events.iter().filter(|e| e.starts_with("start")).count(), 4, "{events:?}");
    for name in ["first.weight", "first.bias", "second.weight", "second.bias"] {
        let start = events.iter().position(|e| *e == format!("start {name}"));
        let wait = events.iter().position(|e| *e == format!("wait {name}"));
        assert!(matches!((start, wait), (Some(s), Some(w)) if s < w), "{name}: {events:?}");
    }
    Ok(())
}

#[test]
fn summing_a_tensor_that_is_not_f32_is_an_error_naming_it() -> Result<()> {
    let g = Graph::new();
    let x = g.input("x", [4])?;
    let counts = x.gt(x * 0.5)?.cast(DType::I64)?;
    let reduced = [("the counts".to_string(), counts)];
    let error = function_reducing(&g, &[x], &[x.sum_all()?], &[], &reduced, &Default::default()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("`the counts` is i64") && message.contains("reduce.rs"), "{message}");
    Ok(())
}
