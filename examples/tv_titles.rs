//! Classifying TV titles from their characters, robust to misspellings, as in the
//! practitioners' notes on character-level positional encoding.
//!
//! A title is a sequence of characters. Each character's embedding is multiplied by the
//! notes' positional encoding of its place (`layers::positional_encoding`), so the order
//! counts without a recurrent net while a misspelled title still shares most of its terms
//! with the right one. Attention weighs the positions (padding masked out) and pools them; two
//! heads then predict the title's category (softmax, cross-entropy) and its tags (several
//! may hold: one logistic loss per tag), and the two losses are added into one.
//!
//! Training sees every title with random typos (swapped, dropped, doubled or replaced
//! characters) at every step; the test titles carry typos drawn apart from training. The
//! example prints the accuracy on clean and on misspelled titles and a few predictions.
//!
//! With `--out DIR`, the trained model is also exported (`kiln::export`): `DIR/titles` is an
//! executable with the character table baked in that reads UTF-8 titles, one per line, and
//! prints one line per title: the category, a tab, the predicted tags separated by commas.
//! Characters are lowercased and looked up as in training (anything outside the 38 known
//! characters is the "other" id); a title longer than 32 characters is cut to its first 32,
//! as in training.
//!
//! Run: `cargo run --release --example tv_titles [-- --out DIR]`

use kiln::export::{CharacterTable, Model, TextClassifier};
use kiln::prelude::*;

/// Characters per title (longer ones are cut); the model's `[B, 32]` input says the same.
const LEN: usize = 32;
const DIM: usize = 32;
const VOCAB: usize = 39;
const CATEGORIES: [&str; 6] = ["news", "sports", "kids", "crime", "documentary", "comedy"];
const TAGS: [&str; 9] = ["live", "daily", "weekly", "football", "cartoon", "animals", "police", "history", "nature"];

model! {
    /// Characters with positions, attention pooling, a category head and a tag head.
    struct TitleNet {
        chars: Embedding(VOCAB => DIM),
        attention: Linear(32 => 1),
        hidden: Linear(32 => 64),
        category: Linear(64 => 6),
        tags: Linear(64 => 9),
    }
    fn forward(&self, chars: i64[B, 32]) -> [B, 15] {
        let graph = chars.graph();
        // The notes' encoding: each character's embedding times its position's row.
        let encoded = self.chars(chars) * layers::positional_encoding(graph, LEN, DIM);
        // Attention over the positions; padding (id 0) gets no weight.
        let padding = chars.eq(0)?;
        let scores = self.attention(encoded).sum(&[2], false)? - padding * 1e4;
        let weights = softmax(scores, 1).reshape([Dim::sym("B"), 32.into(), 1.into()])?;
        let pooled = (encoded * weights).sum(&[1], false)?;
        let h = relu(self.hidden(pooled));
        Tensor::concat(&[self.category(h), self.tags(h)], 1)?
    }
}

/// The titles, their category and their tags.
const TITLES: [(&str, usize, &[usize]); 48] = [
    ("Evening News", 0, &[0, 1]),
    ("World News Tonight", 0, &[0, 1]),
    ("Morning Briefing", 0, &[0, 1]),
    ("News at Ten", 0, &[0, 1]),
    ("Politics Weekly", 0, &[2]),
    ("Business Report", 0, &[1]),
    ("Weather Update", 0, &[0, 1]),
    ("Headlines Today", 0, &[0, 1]),
    ("Football Tonight", 1, &[0, 3]),
    ("Premier League Live", 1, &[0, 3]),
    ("Match of the Week", 1, &[2, 3]),
    ("Tennis Highlights", 1, &[]),
    ("Formula One Race", 1, &[0]),
    ("Champions League Goals", 1, &[3]),
    ("Golf Weekly", 1, &[2]),
    ("Boxing Fight Night", 1, &[0]),
    ("Paw Patrol", 2, &[4, 5]),
    ("Peppa Pig", 2, &[4, 5]),
    ("Sesame Street", 2, &[]),
    ("Bluey", 2, &[4, 5]),
    ("Tom and Jerry", 2, &[4, 5]),
    ("SpongeBob SquarePants", 2, &[4]),
    ("Dora the Explorer", 2, &[4]),
    ("Teletubbies", 2, &[]),
    ("Police Squad", 3, &[6]),
    ("Crime Scene Investigators", 3, &[6]),
    ("Detective Stories", 3, &[6]),
    ("Murder Mystery Hour", 3, &[2]),
    ("Law and Order", 3, &[6]),
    ("The Inspector", 3, &[6]),
    ("Cold Case Files", 3, &[6, 7]),
    ("Night Patrol", 3, &[6]),
    ("Planet Earth", 4, &[8, 5]),
    ("Wildlife Diaries", 4, &[8, 5]),
    ("Ancient Rome", 4, &[7]),
    ("Secrets of the Ocean", 4, &[8]),
    ("World War Stories", 4, &[7]),
    ("Life of Lions", 4, &[8, 5]),
    ("History Uncovered", 4, &[7]),
    ("Mountain Explorers", 4, &[8]),
    ("Friday Night Comedy", 5, &[2]),
    ("Stand Up Special", 5, &[0]),
    ("Sitcom Classics", 5, &[]),
    ("The Office Party", 5, &[]),
    ("Laugh Out Loud", 5, &[]),
    ("Funny Animals", 5, &[5]),
    ("Comedy Roast", 5, &[0]),
    ("Sketch Show", 5, &[2]),
];

/// A small deterministic generator for the typos and the batches.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// `title` with `typos` random edits: a swap, a drop, a doubled or a replaced character.
fn misspell(title: &str, typos: usize, rng: &mut Lcg) -> String {
    let mut chars: Vec<char> = title.chars().collect();
    for _ in 0..typos {
        let at = rng.below(chars.len().max(2) - 1);
        match rng.below(4) {
            0 => chars.swap(at, at + 1),
            1 if chars.len() > 3 => {
                chars.remove(at);
            }
            2 => chars.insert(at, chars[at]),
            _ => chars[at] = (b'a' + rng.below(26) as u8) as char,
        }
    }
    chars.into_iter().collect()
}

/// A lowercased character's id: 1–26 letters, 27–36 digits, 37 space, 38 anything else (0 is padding).
fn char_id(c: char) -> i64 {
    match c {
        'a'..='z' => c as i64 - 'a' as i64 + 1,
        '0'..='9' => c as i64 - '0' as i64 + 27,
        ' ' => 37,
        _ => 38,
    }
}

/// The ids of one character of a title: its lowercase form's (one, or more when lowercasing
/// expands it). The exported executable's table is made from this function.
fn char_ids(c: char) -> Vec<i64> {
    c.to_lowercase().map(char_id).collect()
}

/// A title's row of `LEN` ids: each character's ids, cut at `LEN`, padded with 0.
fn encode(title: &str, ids: &mut Vec<i64>) {
    let mut row: Vec<i64> = title.chars().flat_map(char_ids).take(LEN).collect();
    row.resize(LEN, 0);
    ids.extend(row);
}

/// A batch of the given titles (indices into `TITLES`), each with `typos` typos.
fn batch(picks: &[usize], typos: usize, rng: &mut Lcg) -> [Value; 3] {
    let (mut ids, mut categories, mut tags) = (Vec::new(), Vec::new(), Vec::new());
    for &pick in picks {
        let (title, category, title_tags) = TITLES[pick];
        encode(&misspell(title, typos, rng), &mut ids);
        categories.push(category as i64);
        tags.extend((0..TAGS.len()).map(|t| if title_tags.contains(&t) { 1.0 } else { 0.0 }));
    }
    let n = picks.len();
    [Value::i64([n, LEN], ids), Value::i64([n], categories), Value::f32([n, TAGS.len()], tags)]
}

/// Category accuracy and the fraction of titles whose tags are all right.
fn score(outputs: &[f64], categories: &Value, tags: &Value) -> (f64, f64) {
    let width = CATEGORIES.len() + TAGS.len();
    let (categories, tags) = (categories.to_f64_vec(), tags.to_f64_vec());
    let rows = categories.len();
    let (mut right, mut all_tags) = (0, 0);
    for (row, out) in outputs.chunks(width).enumerate() {
        let best = (0..CATEGORIES.len()).max_by(|&a, &b| out[a].total_cmp(&out[b])).unwrap_or(0);
        right += usize::from(best as f64 == categories[row]);
        let predicted = out[CATEGORIES.len()..].iter().map(|&logit| if logit > 0.0 { 1.0 } else { 0.0 });
        all_tags += usize::from(predicted.zip(&tags[row * TAGS.len()..]).all(|(p, t)| p == *t));
    }
    (right as f64 / rows as f64, all_tags as f64 / rows as f64)
}

/// Exports the trained model to `dir/titles` (the text executable) and shows it at work.
fn export(params: &ParamStore, dir: &std::path::Path) -> kiln::Result<()> {
    let g = Graph::new();
    let model = TitleNet::new(&g)?;
    model.eval();
    let [chars] = model.inputs(&g)?;
    let out = model.forward(chars)?;
    let (category, tags) = (out.slice(1, 0, CATEGORIES.len())?, out.slice(1, CATEGORIES.len(), 15)?);
    let artifact = Model::with_ports(&g, &[chars], &[category, tags]).export(params, &ExportOptions::new("titles"))?;
    let classifier = TextClassifier {
        characters: CharacterTable::from_encoder(0, 38, char_ids),
        categories: CATEGORIES.iter().map(|c| c.to_string()).collect(),
        tags: TAGS.iter().map(|t| t.to_string()).collect(),
    };
    let io = |e: std::io::Error| Error::Export { detail: format!("{}: {e}", dir.display()) };
    std::fs::create_dir_all(dir).map_err(io)?;
    let executable = artifact.link_text_executable(dir, &classifier)?;
    artifact.write_static_library(dir)?;
    println!("\nwrote {} ({} ids in, category and tag logits out)", executable.display(), LEN);
    let titles = "Evening News\nPaw Patrol\nPlanet Earth\n";
    let mut child = std::process::Command::new(&executable)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(io)?;
    use std::io::Write;
    child.stdin.take().map(|mut stdin| stdin.write_all(titles.as_bytes())).transpose().map_err(io)?;
    let output = child.wait_with_output().map_err(io)?;
    println!("$ printf '{}' | {}", titles.replace('\n', "\\n"), executable.display());
    print!("{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let out_dir = match arguments.as_slice() {
        [] => None,
        [flag, dir] if flag == "--out" => Some(std::path::PathBuf::from(dir)),
        _ => return Err(format!("usage: tv_titles [--out DIR], not {arguments:?}").into()),
    };
    let g = Graph::new();
    let model = TitleNet::new(&g)?;
    println!("{model}\n");
    let [chars] = model.inputs(&g)?;
    let labels = g.typed_input("labels", [Dim::sym("B")], DType::I64)?;
    let targets = g.input("targets", [Dim::sym("B"), TAGS.len().into()])?;
    let out = model.forward(chars)?;
    let category_loss = layers::cross_entropy(out.slice(1, 0, CATEGORIES.len())?, labels)?;
    let tag_loss = layers::binary_cross_entropy_with_logits(out.slice(1, CATEGORIES.len(), 15)?, targets)?;
    let loss = category_loss + 0.5 * tag_loss;
    let objective =
        Objective { loss, inputs: vec![chars, labels, targets], metrics: vec![("tag loss".into(), tag_loss)] };
    let adam = Adam::new();
    let mut trainer = Trainer::new(&g, &objective, &Settings::new(&adam, 0.01))?;

    let mut rng = Lcg(1);
    let every: Vec<usize> = (0..TITLES.len()).collect();
    for step in 0..400 {
        let picks: Vec<usize> = (0..128).map(|_| rng.below(TITLES.len())).collect();
        let report = trainer.step(&batch(&picks, 1 + step % 3, &mut rng))?;
        if report.diagnostics.is_some() && step >= 63 {
            println!("step {step}: loss {:.4} (tags {:.4})", report.loss, report.metrics[0].1);
        }
    }

    // Evaluation: the forward half of the same graph, compiled (it reads neither the labels
    // nor the optimizer's inputs), in eval mode as PyTorch's `model.eval()` sets it.
    let mut predict = function(&g, &[chars], &[out], &[])?;
    predict.set_params(&trainer.params())?;
    model.eval();
    let mut test_rng = Lcg(20_261_201);
    println!("\n{:<22} {:>18} {:>18}", "titles", "category accuracy", "all tags right");
    for typos in [0, 1, 2, 3] {
        let picks: Vec<usize> = every.iter().copied().cycle().take(TITLES.len() * 10).collect();
        let [ids, categories, tags] = batch(&picks, typos, &mut test_rng);
        let outputs = predict.call(&[ids])?[0].to_f64_vec();
        let (accuracy, tags_right) = score(&outputs, &categories, &tags);
        let what = match typos {
            0 => "as written".to_string(),
            1 => "with 1 typo".to_string(),
            _ => format!("with {typos} typos"),
        };
        println!("{what:<22} {accuracy:>18.3} {tags_right:>18.3}");
    }

    println!("\na few misspelled titles never seen in training:");
    for title in ["Premeir Leage Lve", "Wildlfie Diaires", "Tom an Jerri", "Evenign Nwes", "Polise Sqaud"] {
        let mut ids = Vec::new();
        encode(title, &mut ids);
        let out = predict.call(&[Value::i64([1, LEN], ids)])?[0].to_f64_vec();
        let best = (0..CATEGORIES.len()).max_by(|&a, &b| out[a].total_cmp(&out[b])).unwrap_or(0);
        let tags: Vec<&str> = (0..TAGS.len()).filter(|&t| out[CATEGORIES.len() + t] > 0.0).map(|t| TAGS[t]).collect();
        println!("  {title:<20} -> {:<12} tags {tags:?}", CATEGORIES[best]);
    }
    if let Some(dir) = out_dir {
        export(&trainer.params(), &dir)?;
    }
    Ok(())
}
