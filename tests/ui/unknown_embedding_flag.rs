use kiln::prelude::*;

model! {
    struct Net {
        words: Embedding(100 => 8, dense),
    }
    fn forward(&self, ids: i64[B, T]) -> [B, T, 8] {
        self.words(ids)
    }
}

fn main() {}
