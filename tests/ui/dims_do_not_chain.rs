use kiln::prelude::*;

model! {
    struct Net {
        layer1: Linear(2 => 20),
        layer2: Linear(30 => 2),
    }
    fn forward(&self, x: [B, 2]) -> [B, 2] {
        let h = relu(self.layer1(x));
        self.layer2(h)
    }
}

model! {
    struct Stack {
        body: Sequential(Linear(2 => 20), ReLU, Linear(21 => 2)),
    }
    fn forward(&self, x: [B, 2]) -> [B, 2] {
        self.body(x)
    }
}

fn main() {}
