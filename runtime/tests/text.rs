//! Vocabularies and word-vector files: every format read from small files written here,
//! malformed files refused with the line or byte offset, the word2vec writers read back bit
//! for bit, and loading into an embedding param (found and missing tokens, dimension checks,
//! nothing changed on error). A property test feeds random bytes and mutated files to every
//! reader: each gives vectors or an error, never a panic.

use kiln_compiler::prelude::*;
use kiln_runtime::text::{Format, Specials, Vocab, WordVectors, load_embedding, vectors_of_table};
use proptest::prelude::*;

fn temp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-text-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn sample() -> WordVectors {
    let rows = vec![
        ("cat".to_string(), vec![0.1, -2.5, 3.0e-8]),
        ("dog".to_string(), vec![1.0 / 3.0, 7.0, -0.0]),
        ("émeu".to_string(), vec![f32::MAX, f32::MIN_POSITIVE, 1e30]),
    ];
    WordVectors::new(3, rows).unwrap()
}

fn error_of(bytes: &[u8], format: Format) -> String {
    match WordVectors::parse(bytes, format, "test.vec") {
        Ok(vectors) => panic!("parsed {} vectors from a malformed file", vectors.len()),
        Err(error) => {
            assert!(matches!(error, Error::Vectors { .. }), "{error}");
            error.to_string()
        }
    }
}

#[test]
fn vocab_from_corpus_orders_by_count_then_first_appearance_and_drops_rare_words() {
    let vocab = Vocab::from_corpus("b a c\na b d\nc e b\n", 2, Specials::NONE);
    assert_eq!(vocab.tokens(), ["b", "a", "c"]);
    assert_eq!(vocab.counts(), [3, 2, 2]);
    assert_eq!((vocab.padding(), vocab.unknown()), (None, None));
    // Without an unknown id, out-of-vocabulary tokens are dropped.
    assert_eq!(vocab.encode(["a", "e", "c"]), [1, 2]);
}

#[test]
fn vocab_specials_take_the_first_ids_and_unknown_tokens_map_to_unknown() {
    let vocab = Vocab::from_corpus("x y x", 1, Specials::BOTH);
    assert_eq!(vocab.tokens(), ["<pad>", "<unk>", "x", "y"]);
    assert_eq!((vocab.padding(), vocab.unknown()), (Some(0), Some(1)));
    assert_eq!(vocab.encode(["y", "zebra"]), [3, 1]);
    assert_eq!(vocab.encode_padded(["x", "x", "y", "x"], 3).unwrap(), [2, 2, 3]);
    assert_eq!(vocab.encode_padded(["x"], 3).unwrap(), [2, 0, 0]);
    let only_unknown = Vocab::from_corpus("x", 1, Specials { padding: false, unknown: true });
    assert_eq!(only_unknown.tokens(), ["<unk>", "x"]);
    let error = only_unknown.encode_padded(["x"], 2).unwrap_err().to_string();
    assert!(error.contains("no padding id"), "{error}");
}

#[test]
fn vocab_from_tokens_keeps_the_order_and_refuses_duplicates() {
    let vocab = Vocab::from_tokens(["z", "a"], Specials::NONE).unwrap();
    assert_eq!((vocab.id("z"), vocab.id("a"), vocab.token(1)), (Some(0), Some(1), Some("a")));
    let error = Vocab::from_tokens(["z", "a", "z"], Specials::NONE).unwrap_err().to_string();
    assert!(error.contains("token `z` (position 2) is already in the vocabulary as id 0"), "{error}");
    let error = Vocab::from_tokens(["<pad>"], Specials::BOTH).unwrap_err().to_string();
    assert!(error.contains("`<pad>`"), "{error}");
}

#[test]
fn glove_word2vec_text_and_fasttext_files_read_the_same_vectors() {
    let glove = temp_file("glove.txt", b"cat 0.5 -1\r\ndog 2 3e-2 \n");
    let word2vec = temp_file("w2v.txt", b"2 2\ncat 0.5 -1\ndog 2 3e-2\n");
    let fasttext = temp_file("ft.vec", b"2 2 \ncat 0.5 -1 \ndog 2 3e-2 \n");
    let expected = WordVectors::new(2, vec![("cat".into(), vec![0.5, -1.0]), ("dog".into(), vec![2.0, 0.03])]).unwrap();
    assert_eq!(WordVectors::read(&glove, Format::Glove).unwrap(), expected);
    assert_eq!(WordVectors::read(&word2vec, Format::Word2VecText).unwrap(), expected);
    assert_eq!(WordVectors::read(&fasttext, Format::FastText).unwrap(), expected);
}

#[test]
fn word2vec_text_and_binary_writers_read_back_bit_for_bit() {
    let vectors = sample();
    let text = temp_file("out.txt", b"");
    vectors.write_word2vec_text(&text).unwrap();
    assert_eq!(WordVectors::read(&text, Format::Word2VecText).unwrap(), vectors);
    let binary = temp_file("out.bin", b"");
    vectors.write_word2vec_binary(&binary).unwrap();
    let back = WordVectors::read(&binary, Format::Word2VecBinary).unwrap();
    assert_eq!(back, vectors);
    let bits = |v: &WordVectors| v.row(1).iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back), bits(&vectors), "-0.0 keeps its sign");
}

#[test]
fn word2vec_binary_without_newlines_between_vectors_reads() {
    let mut bytes = b"2 1\na ".to_vec();
    bytes.extend(1.5f32.to_le_bytes());
    bytes.extend(b"b ");
    bytes.extend((-2.0f32).to_le_bytes());
    let vectors = WordVectors::parse(&bytes, Format::Word2VecBinary, "inline").unwrap();
    assert_eq!((vectors.get("a"), vectors.get("b")), (Some(&[1.5][..]), Some(&[-2.0][..])));
}

#[test]
fn writers_refuse_tokens_with_whitespace() {
    let vectors = WordVectors::new(1, vec![("new york".into(), vec![1.0])]).unwrap();
    let error = vectors.to_word2vec_text().unwrap_err().to_string();
    assert!(error.contains("\"new york\" is empty or holds whitespace"), "{error}");
}

#[test]
fn malformed_text_files_are_errors_naming_the_line() {
    let cases: [(&[u8], Format, &str); 12] = [
        (b"", Format::Glove, "the file is empty"),
        (b"cat 1 2\ndog 1 x\n", Format::Glove, "line 2: value 2 of token \"dog\" is not a number: \"x\""),
        (b"cat 1 2\ndog 1\n", Format::Glove, "line 2: token \"dog\" has 1 values, expected 2"),
        (b"cat\n", Format::Glove, "line 1: token \"cat\" has 0 values, expected at least 1"),
        (b"cat 1 2\n\ndog 1 2\n", Format::Glove, "line 2: empty line"),
        (b"cat 1 nan\n", Format::Glove, "line 1: value 2 of token \"cat\" is not finite"),
        (b"cat 1\ncat 2\n", Format::Glove, "line 2: token `cat` is repeated (first as vector 1)"),
        (b"cat 1 \xff\n", Format::Glove, "line 1: not UTF-8 (byte 7 of the line)"),
        (b"2 x\ncat 1\n", Format::Word2VecText, "line 1: expected a header `count dim`"),
        (b"cat 1 2\n", Format::FastText, "line 1: expected a header `count dim` (dim at least 1), got \"cat 1 2\""),
        (b"1 2\ncat 1 2\ndog 3 4\n", Format::Word2VecText, "line 3: more vectors than the header's count of 1"),
        (b"3 2\ncat 1 2\ndog 3 4\n", Format::FastText, "the header promises 3 vectors, but the file ends after 2"),
    ];
    for (bytes, format, expected) in cases {
        let error = error_of(bytes, format);
        assert!(error.starts_with("word vectors test.vec: "), "{error}");
        assert!(error.contains(expected), "{format:?} {:?}: {error}", String::from_utf8_lossy(bytes));
    }
}

#[test]
fn malformed_binary_files_are_errors_naming_the_byte_offset() {
    let good = sample().to_word2vec_binary().unwrap();
    // "3 3\n" is 4 bytes; "cat " 4 more, then 12 bytes of floats and a newline.
    let truncated = &good[..good.len() - 5];
    let error = error_of(truncated, Format::Word2VecBinary);
    let third = 4 + (4 + 12 + 1) * 2 + "émeu ".len();
    assert!(
        error.contains(&format!(
            "byte offset {third}: the file ends inside vector 3 (\"émeu\"): 12 bytes needed, 8 left"
        )),
        "{error}"
    );
    let error = error_of(&good[..21], Format::Word2VecBinary);
    assert!(error.contains("byte offset 21: the file ends before vector 2's token (the header promises 3)"), "{error}");
    let error = error_of(b"3 three\n", Format::Word2VecBinary);
    assert!(error.contains("byte offset 0: expected a header line `count dim`"), "{error}");
    let mut nan = good.clone();
    nan[8 + 4..8 + 8].copy_from_slice(&f32::NAN.to_le_bytes());
    let error = error_of(&nan, Format::Word2VecBinary);
    assert!(error.contains("byte offset 12: value 2 of token \"cat\" is not finite"), "{error}");
    let mut extra = good.clone();
    extra.extend(b"more");
    let error = error_of(&extra, Format::Word2VecBinary);
    assert!(error.contains(&format!("byte offset {}: data after the header's 3 vectors", good.len())), "{error}");
    let error = error_of(b"1 1000000000000000000\na ", Format::Word2VecBinary);
    let expected = "byte offset 24: the file ends inside vector 1 (\"a\"): 4000000000000000000 bytes needed, 0 left";
    assert!(error.contains(expected), "{error}");
}

#[test]
fn load_embedding_fills_found_rows_zeroes_padding_and_keeps_the_rest() {
    let g = Graph::new();
    let vocab = Vocab::from_tokens(["cat", "yak", "dog"], Specials::BOTH).unwrap();
    layers::Embedding::new(&g, "words", vocab.len(), 3).unwrap();
    let mut store = ParamStore::init(&g, 7);
    let before = store.get("words.weight").unwrap().to_f32_vec();
    let vectors = sample();
    let coverage = load_embedding(&mut store, "words.weight", &vocab, &vectors).unwrap();
    assert_eq!((coverage.found, coverage.missing.clone()), (2, vec!["yak".to_string()]));
    let after = store.get("words.weight").unwrap().to_f32_vec();
    assert_eq!(&after[0..3], &[0.0; 3], "padding row");
    assert_eq!(&after[3..6], &before[3..6], "unknown row keeps its draw");
    assert_eq!(&after[6..9], vectors.get("cat").unwrap());
    assert_eq!(&after[9..12], &before[9..12], "missing token keeps its draw");
    assert_eq!(&after[12..15], vectors.get("dog").unwrap());
    // And back: the table's word rows as vectors.
    let back = vectors_of_table(&vocab, store.get("words.weight").unwrap()).unwrap();
    assert_eq!(back.tokens(), ["cat", "yak", "dog"]);
    assert_eq!(back.get("dog"), vectors.get("dog"));
}

#[test]
fn load_embedding_refuses_a_dimension_mismatch_and_changes_nothing() {
    let g = Graph::new();
    let vocab = Vocab::from_tokens(["cat", "dog"], Specials::NONE).unwrap();
    layers::Embedding::new(&g, "words", vocab.len(), 4).unwrap();
    let mut store = ParamStore::init(&g, 0);
    let before = store.clone();
    let error = load_embedding(&mut store, "words.weight", &vocab, &sample()).unwrap_err().to_string();
    assert!(
        error.contains("dimension mismatch: the vectors have dim 3, but param `words.weight` is [2, 4] (dim 4)"),
        "{error}"
    );
    assert_eq!(store, before);
    let wrong_vocab = Vocab::from_tokens(["cat"], Specials::NONE).unwrap();
    let error = load_embedding(&mut store, "words.weight", &wrong_vocab, &sample()).unwrap_err().to_string();
    assert!(error.contains("expected an f32 table of shape [1, 3]"), "{error}");
    let error = load_embedding(&mut store, "nothing.weight", &vocab, &sample()).unwrap_err().to_string();
    assert!(error.contains("param `nothing.weight` has no value"), "{error}");
    assert_eq!(store, before);
}

#[test]
fn nearest_neighbours_rank_by_cosine_similarity() {
    let rows = vec![
        ("a".into(), vec![1.0, 0.0]),
        ("b".into(), vec![10.0, 1.0]),
        ("c".into(), vec![0.0, 1.0]),
        ("d".into(), vec![-1.0, 0.0]),
    ];
    let vectors = WordVectors::new(2, rows).unwrap();
    let nearest = vectors.nearest("a", 3).unwrap();
    let names: Vec<&str> = nearest.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["b", "c", "d"]);
    assert!((nearest[2].1 + 1.0).abs() < 1e-6);
    assert_eq!(vectors.nearest("zebra", 3), None);
}

fn any_format() -> impl Strategy<Value = Format> {
    prop_oneof![Just(Format::Glove), Just(Format::Word2VecText), Just(Format::Word2VecBinary), Just(Format::FastText)]
}

/// Loads that succeed must give well-formed vectors.
fn check_well_formed(bytes: &[u8], format: Format) {
    if let Ok(vectors) = WordVectors::parse(bytes, format, "fuzz") {
        for (i, token) in vectors.tokens().iter().enumerate() {
            assert_eq!(vectors.row(i).len(), vectors.dim());
            assert!(vectors.row(i).iter().all(|v| v.is_finite()));
            assert_eq!(vectors.get(token), Some(vectors.row(i)));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_give_vectors_or_an_error_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        format in any_format(),
    ) {
        check_well_formed(&bytes, format);
    }

    #[test]
    fn mutated_valid_files_give_vectors_or_an_error_never_a_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
        binary in any::<bool>(),
        cut in any::<usize>(),
    ) {
        let vectors = sample();
        let (mut bytes, formats) = if binary {
            (vectors.to_word2vec_binary().unwrap(), vec![Format::Word2VecBinary])
        } else {
            (vectors.to_word2vec_text().unwrap().into_bytes(), vec![Format::Word2VecText, Format::FastText, Format::Glove])
        };
        for (at, byte, kind) in edits {
            let at = at % (bytes.len() + 1);
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => {}
            }
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        for format in formats {
            check_well_formed(&bytes, format);
        }
    }
}
