use kiln::prelude::*;

model! {
    struct Net {
        layer1: Conv(2 => 20),
    }
    fn forward(&self, x: [B, 2]) -> [B, 20] {
        self.layer1(x)
    }
}

fn main() {}
