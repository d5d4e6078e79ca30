//! The encoder, the recurrent classifier and the CNN built through the registry, as the CLI does.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, batch, build_model, make_cell, rand, registry, values};
use rand::RngCore;
use rnnlab_core::{
    cross_entropy, dropout_mask, reference_forward_seq, seeded, Batch, Grads, Model, ModelContext,
    ParamBuilder, ParamInit, Params, Rng,
};
use rnnlab_models::{encoder, recurrent_classifier, RecurrentClassifier};

fn seqs() -> Vec<Vec<u32>> {
    vec![
        vec![3, 5, 7, 2, 9, 4],
        vec![8, 1],
        vec![6],
        vec![2, 2, 10, 11],
    ]
}

/// A concrete classifier (to reach its encoder), built from a TOML table.
fn classifier(src: &str, dtype: DType) -> (RecurrentClassifier, Params) {
    let r = registry();
    let table: toml::Table = toml::from_str(src).unwrap();
    let (_, p) = r
        .models
        .resolve(&table, "model", Some("recurrent"))
        .unwrap();
    let ctx = ModelContext {
        vocab_size: 12,
        num_classes: 3,
        pretrained: None,
        freeze_embedding: false,
        pad_id: 0,
        registry: &r,
    };
    let mut rng = seeded(9);
    let mut init = ParamInit::new(&mut rng, dtype, Device::Cpu);
    let m = recurrent_classifier(&p.typed().unwrap(), p.path(), &ctx, &mut init).unwrap();
    let store = m.params().clone();
    (m, store)
}

fn one(seq: &[u32]) -> Batch {
    batch(&[seq.to_vec()], 0)
}

/// The gradients of one training pass of `m` on `b`, each asserted to be non-zero somewhere.
fn nonzero_grads(m: &dyn Model, b: &Batch, rng: &mut Rng) -> Grads {
    let loss = m
        .loss(&m.forward(b, true, rng).unwrap(), &b.labels)
        .unwrap();
    let mut grads = loss.backward().unwrap();
    let g = Grads::from_backward(m.params(), &mut grads).unwrap();
    for (name, t) in g.iter() {
        assert!(
            values(t).iter().any(|v| *v != 0.0),
            "{name} has no gradient"
        );
    }
    g
}

#[test]
fn padded_batch_equals_sequences_one_by_one() {
    for cell in ["lstm", "gru", "rnn"] {
        for pooling in ["last", "mean", "max"] {
            let src = format!(
                "embedding_dim = 5\npooling = \"{pooling}\"\ncell = {{ type = \"{cell}\", hidden = 4, layers = 2, bidirectional = true }}"
            );
            let (m, _) = classifier(&src, DType::F64);
            let what = format!("{cell} {pooling}");
            // The padding holds a real token id: only the lengths may say where sequences end.
            let b = batch(&seqs(), 7);
            let mut rng = seeded(0);
            let logits = m.forward(&b, false, &mut rng).unwrap();
            assert_eq!(logits.dims(), [4, 3]);
            let x = m.embedding().forward(&b.ids).unwrap();
            let enc = m
                .encoder()
                .forward(&x, &b.lengths, false, &mut rng)
                .unwrap();
            assert_eq!(enc.last.dims(), [4, 8]);
            assert_eq!(enc.h_n.len(), 4);
            for (i, s) in seqs().iter().enumerate() {
                let single = one(s);
                let l1 = m.forward(&single, false, &mut rng).unwrap();
                assert_close(
                    &logits.get(i).unwrap(),
                    &l1.get(0).unwrap(),
                    1e-9,
                    1e-12,
                    &format!("{what}: logits {i}"),
                );
                let x1 = m.embedding().forward(&single.ids).unwrap();
                let e1 = m
                    .encoder()
                    .forward(&x1, &single.lengths, false, &mut rng)
                    .unwrap();
                assert_close(
                    &enc.last.get(i).unwrap(),
                    &e1.last.get(0).unwrap(),
                    1e-9,
                    1e-12,
                    &format!("{what}: state {i}"),
                );
                for (k, (hb, h1)) in enc.h_n.iter().zip(&e1.h_n).enumerate() {
                    assert_close(
                        &hb.get(i).unwrap(),
                        &h1.get(0).unwrap(),
                        1e-9,
                        1e-12,
                        &format!("{what}: h_n[{k}] {i}"),
                    );
                }
            }
        }
    }
}

#[test]
fn last_padded_reads_the_padding() {
    let cell = "cell = { type = \"gru\", hidden = 4 }\nembedding_dim = 5";
    let (last, _) = classifier(&format!("pooling = \"last\"\n{cell}"), DType::F64);
    let (padded, _) = classifier(&format!("pooling = \"last_padded\"\n{cell}"), DType::F64);
    let mut rng = seeded(0);
    let b = batch(&seqs(), 0);
    let a = values(&last.forward(&b, false, &mut rng).unwrap());
    let p = values(&padded.forward(&b, false, &mut rng).unwrap());
    // The full-length sequence (row 0) agrees, the padded ones do not.
    for j in 0..3 {
        assert!((a[j] - p[j]).abs() < 1e-12);
        assert!((a[3 + j] - p[3 + j]).abs() > 1e-9);
    }
    // last_padded equals reading the padded ids as if they were real tokens.
    let mut full = b.clone();
    full.lengths = vec![6; 4];
    let f = last.forward(&full, false, &mut rng).unwrap();
    assert_close(
        &Tensor::new(p.as_slice(), &Device::Cpu).unwrap(),
        &f.flatten_all().unwrap(),
        1e-12,
        1e-12,
        "padded",
    );
}

#[test]
fn recurrent_dropout_reuses_one_mask_per_sequence_and_is_off_in_eval() {
    let r = registry();
    let table: toml::Table =
        toml::from_str("type = \"rnn\"\nhidden = 6\nrecurrent_dropout = 0.5").unwrap();
    let (b, t, e, h) = (3, 7, 4, 6);
    let mut store = Params::new();
    let mut rng = seeded(2);
    let mut pb = ParamBuilder::new(&mut store, &mut rng, DType::F64, Device::Cpu);
    let enc = encoder(&table, "model.cell", e, 0.0, &r, &mut pb).unwrap();
    drop(pb);
    let x = rand(&mut seeded(4), &[b, t, e], DType::F64);
    let lengths = [7, 5, 3];
    let w_hh = store.get("rnn.weight_hh_l0").unwrap().var.clone();

    // The mask the encoder draws first, predicted with a copy of the generator.
    let mut rng = seeded(5);
    let mask = dropout_mask(&mut rng.clone(), &[b, h], 0.5, DType::F64, &Device::Cpu).unwrap();
    let out = enc.forward(&x, &lengths, true, &mut rng).unwrap();
    let expected =
        reference_forward_seq(enc.cells()[0].as_ref(), &x, &lengths, false, Some(&mask)).unwrap();
    assert_close(
        &out.outputs,
        &expected.outputs,
        1e-12,
        1e-12,
        "masked outputs",
    );

    // A unit dropped for a sequence never feeds its recurrence: the column of W_hh that reads
    // it gets no gradient from that sequence's outputs, at any step.
    let m = values(&mask);
    let mut dropped = 0;
    for s in 0..b {
        let g = out
            .outputs
            .get(s)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = g.get(w_hh.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        for j in 0..h {
            let col: f64 = g.iter().map(|row| row[j].abs()).sum();
            if m[s * h + j] == 0.0 {
                assert_eq!(col, 0.0, "sequence {s}, dropped unit {j}");
                dropped += 1;
            } else {
                assert!(col > 0.0, "sequence {s}, kept unit {j}");
            }
        }
    }
    assert!(
        dropped > 0 && dropped < b * h,
        "{dropped} dropped: pick another seed"
    );

    // Eval: no mask, and the generator is not touched.
    let mut rng = seeded(5);
    let before = rng.clone();
    let out = enc.forward(&x, &lengths, false, &mut rng).unwrap();
    let plain = reference_forward_seq(enc.cells()[0].as_ref(), &x, &lengths, false, None).unwrap();
    assert_close(&out.outputs, &plain.outputs, 1e-12, 1e-12, "eval outputs");
    assert_eq!(rng.next_u64(), before.clone().next_u64());
}

#[test]
fn parameters_have_torch_names_and_are_shared_with_the_callers_store() {
    let (m, store) = classifier(
        "cell = { type = \"lstm\", hidden = 4, layers = 2, bidirectional = true }",
        DType::F32,
    );
    let names: Vec<&str> = m.params().iter().map(|p| p.name.as_str()).collect();
    let mut want = vec!["embedding.weight".to_string()];
    for s in ["l0", "l0_reverse", "l1", "l1_reverse"] {
        for w in ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] {
            want.push(format!("rnn.{w}_{s}"));
        }
    }
    want.extend(["fc.weight".into(), "fc.bias".into()]);
    assert_eq!(names, want);
    assert_eq!(
        m.params().get("embedding.weight").unwrap().var.dims(),
        [12, 50]
    );
    assert_eq!(
        m.params().get("rnn.weight_ih_l1").unwrap().var.dims(),
        [16, 8]
    );
    assert_eq!(m.params().get("fc.weight").unwrap().var.dims(), [3, 8]);
    let store_names: Vec<&str> = store.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(store_names, names);
    // The same variables: writing through the caller's store changes the model.
    let v = &store.get("fc.bias").unwrap().var;
    v.set(&Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap())
        .unwrap();
    assert_eq!(
        values(&m.params().tensor("fc.bias").unwrap()),
        [1.0, 2.0, 3.0]
    );
    let rw = m.recurrent_weights();
    let rw: Vec<(&str, usize)> = rw
        .iter()
        .map(|w| (w.name.as_str(), w.gates.len()))
        .collect();
    assert_eq!(
        rw,
        [
            ("rnn.weight_hh_l0", 4),
            ("rnn.weight_hh_l0_reverse", 4),
            ("rnn.weight_hh_l1", 4),
            ("rnn.weight_hh_l1_reverse", 4)
        ]
    );
    // N(0, 1) embedding: the sample moments are near 0 and 1.
    let e = values(&m.params().tensor("embedding.weight").unwrap());
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let var = e.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / e.len() as f64;
    assert!(mean.abs() < 0.15 && (var - 1.0).abs() < 0.2, "{mean} {var}");
}

#[test]
fn pretrained_embedding_is_copied_and_frozen_on_request() {
    let r = registry();
    let table: toml::Table = toml::from_str("type = \"recurrent\"").unwrap();
    let (ctor, p) = r.models.resolve(&table, "model", None).unwrap();
    let glove = rand(&mut seeded(1), &[12, 7], DType::F32);
    // The model on `glove` for a vocabulary of `vocab_size`.
    let build = |vocab_size: usize, freeze: bool| {
        let ctx = ModelContext {
            vocab_size,
            num_classes: 3,
            pretrained: Some(glove.clone()),
            freeze_embedding: freeze,
            pad_id: 0,
            registry: &r,
        };
        let mut rng = seeded(1);
        ctor(
            &p,
            &ctx,
            &mut ParamInit::new(&mut rng, DType::F32, Device::Cpu),
        )
    };
    for freeze in [true, false] {
        let m = build(12, freeze).unwrap();
        let e = m.params().get("embedding.weight").unwrap();
        assert_eq!(e.trainable, !freeze);
        assert_eq!(values(e.var.as_tensor()), values(&glove));
        assert_eq!(
            m.params().get("rnn.weight_ih_l0").unwrap().var.dims(),
            [512, 7]
        );
        // Training steps must not write into the caller's matrix.
        e.var.set(&e.var.zeros_like().unwrap()).unwrap();
        assert_ne!(values(&glove), values(e.var.as_tensor()));
    }
    let e = build(13, false).err().unwrap();
    assert!(
        e.to_string().contains("12 rows for a vocabulary of 13"),
        "{e}"
    );
}

#[test]
fn class_weights_weigh_the_loss() {
    let r = registry();
    let m = build_model(
        &r,
        "class_weights = [1.0, 3.0, 0.5]\ncell = { type = \"gru\", hidden = 4 }",
        12,
        3,
        DType::F64,
        1,
    )
    .unwrap();
    let plain = build_model(
        &r,
        "cell = { type = \"gru\", hidden = 4 }",
        12,
        3,
        DType::F64,
        1,
    )
    .unwrap();
    let mut b = batch(&seqs(), 0);
    b.labels = Tensor::new(&[0u32, 1, 2, 1], &Device::Cpu).unwrap();
    let logits = m.forward(&b, false, &mut seeded(0)).unwrap();
    let w = Tensor::new(&[1f64, 3., 0.5], &Device::Cpu).unwrap();
    let want = cross_entropy(&logits, &b.labels, Some(&w))
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let got = m
        .loss(&logits, &b.labels)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - want).abs() < 1e-12);
    let unweighted = plain
        .loss(&logits, &b.labels)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!((got - unweighted).abs() > 1e-6);
}

#[test]
fn training_mode_draws_dropout_from_the_run_generator() {
    let r = registry();
    let src = "dropout = 0.5\nlayer_dropout = 0.3\ncell = { type = \"lstm\", hidden = 4, layers = 2, recurrent_dropout = 0.2 }";
    let m = build_model(&r, src, 12, 3, DType::F32, 1).unwrap();
    let b = batch(&seqs(), 0);
    let a = values(&m.forward(&b, true, &mut seeded(3)).unwrap());
    let same = values(&m.forward(&b, true, &mut seeded(3)).unwrap());
    let other = values(&m.forward(&b, true, &mut seeded(4)).unwrap());
    let eval1 = values(&m.forward(&b, false, &mut seeded(3)).unwrap());
    let eval2 = values(&m.forward(&b, false, &mut seeded(4)).unwrap());
    assert_eq!(a, same);
    assert_ne!(a, other);
    assert_eq!(eval1, eval2);
    // Backward reaches every trainable parameter.
    nonzero_grads(m.as_ref(), &b, &mut seeded(3));
}

#[test]
fn bad_values_are_clear_errors() {
    let r = registry();
    let cases = [
        ("dropout = 1.0", "model.dropout"),
        ("layer_dropout = -0.1", "model.layer_dropout"),
        ("pooling = \"mena\"", "did you mean `mean`?"),
        ("class_weights = [1.0, 2.0]", "2 weights for 3 classes"),
        ("class_weights = [1.0, -2.0, 1.0]", "non-negative"),
        ("embedding_dim = 0", "model.embedding_dim"),
        (
            "cell = { type = \"lstm\", hidden = 0 }",
            "model.cell.hidden",
        ),
        (
            "cell = { type = \"lstm\", layers = 0 }",
            "model.cell.layers",
        ),
        (
            "cell = { type = \"lstm\", recurrent_dropout = 1.5 }",
            "model.cell.recurrent_dropout",
        ),
        ("cell = { type = \"lsmt\" }", "did you mean `lstm`?"),
        (
            "cell = { type = \"rnn\", nonlinearity = \"sigmoid\" }",
            "tanh, relu",
        ),
        (
            "cell = { type = \"gru\", hiden = 3 }",
            "did you mean `hidden`?",
        ),
        ("cell = 3", "model.cell"),
        ("polling = \"max\"", "did you mean `pooling`?"),
        ("type = \"cnn\"\nwidths = []", "model.widths"),
        ("type = \"cnn\"\nwidths = [3, 0]", "positive"),
        ("type = \"cnn\"\nmaps = 0", "model.maps"),
        ("type = \"cnn\"\ndropout = 2", "model.dropout"),
        (
            "type = \"cnn\"\nclass_weights = [1]",
            "1 weights for 3 classes",
        ),
    ];
    for (src, needle) in cases {
        let e = build_model(&r, src, 12, 3, DType::F32, 0)
            .err()
            .unwrap_or_else(|| panic!("`{src}` was accepted"));
        let msg = e.to_string();
        assert!(msg.contains(needle), "`{src}`: {msg}");
    }
}

#[test]
fn cnn_padding_does_not_change_the_logits() {
    let r = registry();
    let m = build_model(
        &r,
        "type = \"cnn\"\nmaps = 6\nembedding_dim = 5",
        12,
        3,
        DType::F64,
        2,
    )
    .unwrap();
    let names: Vec<&str> = m.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "embedding.weight",
            "convs.0.weight",
            "convs.0.bias",
            "convs.1.weight",
            "convs.1.bias",
            "convs.2.weight",
            "convs.2.bias",
            "fc.weight",
            "fc.bias"
        ]
    );
    assert_eq!(
        m.params().get("convs.2.weight").unwrap().var.dims(),
        [6, 5, 5]
    );
    assert_eq!(m.params().get("fc.weight").unwrap().var.dims(), [3, 18]);
    let b = batch(&seqs(), 7);
    let mut rng = seeded(0);
    let logits = m.forward(&b, false, &mut rng).unwrap();
    assert_eq!(logits.dims(), [4, 3]);
    for (i, s) in seqs().iter().enumerate() {
        let l1 = m.forward(&one(s), false, &mut rng).unwrap();
        assert_close(
            &logits.get(i).unwrap(),
            &l1.get(0).unwrap(),
            1e-12,
            1e-12,
            &format!("cnn row {i}"),
        );
    }
    // Padding with other ids (and more of it) changes nothing either.
    let mut longer: Vec<Vec<u32>> = seqs();
    longer.push(vec![1; 9]);
    let l2 = m.forward(&batch(&longer, 3), false, &mut rng).unwrap();
    assert_close(
        &l2.narrow(0, 0, 4).unwrap(),
        &logits,
        1e-12,
        1e-12,
        "cnn longer padding",
    );
    // Backward reaches every parameter.
    let g = nonzero_grads(m.as_ref(), &b, &mut rng);
    assert_eq!(g.len(), 9);
}

#[test]
fn registry_lists_documented_plugins() {
    let r = registry();
    assert_eq!(r.cells.names(), ["rnn", "lstm", "gru"]);
    assert_eq!(r.models.names(), ["recurrent", "cnn"]);
    let shared: Vec<&str> = r.cells.shared().iter().map(|s| s.name.as_ref()).collect();
    assert_eq!(
        shared,
        ["hidden", "layers", "bidirectional", "recurrent_dropout"]
    );
    // Each built-in cell has a fused sequence kernel, and so the key that picks it.
    for e in r.cells.entries() {
        assert!(
            e.spec.params.iter().any(|p| p.name == "kernel"),
            "{}",
            e.spec.name
        );
    }
    for e in r
        .cells
        .entries()
        .iter()
        .map(|e| &e.spec)
        .chain(r.models.entries().iter().map(|e| &e.spec))
    {
        assert!(!e.doc.is_empty(), "{}", e.name);
        assert!(
            e.params
                .iter()
                .all(|p| !p.doc.is_empty() && p.default.is_some()),
            "{}",
            e.name
        );
    }
    // Every default parses and builds.
    for name in r.models.names() {
        let table: toml::Table = toml::from_str(&format!("type = \"{name}\"")).unwrap();
        let (ctor, p) = r.models.resolve(&table, "model", None).unwrap();
        let ctx = ModelContext {
            vocab_size: 12,
            num_classes: 3,
            pretrained: None,
            freeze_embedding: false,
            pad_id: 0,
            registry: &r,
        };
        let mut rng = seeded(0);
        ctor(
            &p,
            &ctx,
            &mut ParamInit::new(&mut rng, DType::F32, Device::Cpu),
        )
        .unwrap();
    }
    // A cell built by the registry's constructor matches the free constructor's cell.
    let mut params = Params::new();
    let cell = make_cell("gru", 3, 2, &mut params, &mut seeded(0), DType::F32);
    assert_eq!(cell.hidden_size(), 2);
}
