use kiln::prelude::*;

model! {
    struct Net {
        layer1: Linear(2 => 20),
        layer2: Linear(20 => 2),
    }
    fn forward(&self, x: [B, 2]) -> [B, 2] {
        let h = relu(self.layer1(x));
        self.layer3(h)
    }
}

fn main() {}
