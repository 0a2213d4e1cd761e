use kiln::prelude::*;

model! {
    struct Net {
        layer1: Linear(2),
    }
    fn forward(&self, x: [B, 2]) -> [B, 20] {
        self.layer1(x)
    }
}

fn main() {}
