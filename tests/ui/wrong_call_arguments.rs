use kiln::prelude::*;

model! {
    struct Net {
        layer1: Linear(2 => 20),
    }
    fn forward(&self, x: [B, 2]) -> [B, 20] {
        let h = self.layer1(x, x);
        softmax(h)
    }
}

fn main() {}
