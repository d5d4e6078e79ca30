//! Save after k steps, load into a fresh chain and scheduler, continue: the parameters (and the
//! averaged weights) equal an uninterrupted run's bit for bit.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use rnnlab_core::{
    apply_updates, checkpoint, Chain, EpochMetrics, Grads, Interval, Outcome, Params, Registry,
    Result, Scheduler, StateDict, StepContext, StepReport,
};

const STEPS_PER_EPOCH: usize = 5;

struct Run {
    params: Params,
    chain: Chain,
    scheduler: Box<dyn Scheduler>,
    /// The optimizer's learning rate.
    base_lr: f64,
    /// Skip reasons seen, in order.
    skips: Vec<String>,
}

fn registry() -> Registry {
    let mut r = Registry::empty();
    crate::register(&mut r);
    r
}

/// A fresh model (fixed initial values, f32), chain and scheduler from the TOML config.
fn fresh(config: &str) -> Result<Run> {
    let d = Device::Cpu;
    let mut params = Params::new();
    let init: [(&str, Vec<f32>, Vec<usize>); 3] = [
        (
            "rnn.weight_hh_l0",
            vec![0.9, -0.4, 0.3, 1.2, -0.7, 0.5, 0.2, 0.8],
            vec![4, 2],
        ),
        ("rnn.bias_hh_l0", vec![0.1, -0.2, 0.3, 0.05], vec![4]),
        (
            "fc.weight",
            vec![0.5, -0.25, 1.5, 0.75, -1.0, 0.4],
            vec![3, 2],
        ),
    ];
    for (name, v, shape) in init {
        params.insert(
            name,
            Var::from_tensor(&Tensor::from_vec(v, shape, &d)?)?,
            true,
        )?;
    }
    let cfg: toml::Table = toml::from_str(config).expect("valid TOML");
    let r = registry();
    let (links, link_params): (Vec<_>, Vec<_>) = cfg["transforms"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, t)| r.transform(t.as_table().unwrap(), &format!("optim.transforms[{i}]")))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    let mut chain = Chain::new(links);
    chain.init(&params)?;
    let base_lr = Registry::base_lr(&link_params).expect("an optimizer");
    let (scheduler, _) = r.scheduler(
        cfg["scheduler"].as_table().unwrap(),
        "optim.scheduler",
        base_lr,
    )?;
    Ok(Run {
        params,
        chain,
        scheduler,
        base_lr,
        skips: Vec::new(),
    })
}

/// Gradients that depend on the weights and the step; step 6 has a NaN.
fn grads(params: &Params, step: usize) -> Result<Grads> {
    let mut pairs = Vec::new();
    for p in params.trainable() {
        let mut g = (p.var.as_tensor() * 3.0)?
            .affine(1.0, 0.1 * step as f64)?
            .sin()?;
        if step == 6 && p.name == "fc.weight" {
            g = (g / 0.0)?.affine(0.0, 0.0)?; // 0 * inf = NaN
        }
        pairs.push((p.name.clone(), g));
    }
    Ok(Grads::from_pairs(pairs))
}

/// Runs steps `from..to` as the trainer does; epoch ends report a `val_loss`.
fn train(run: &mut Run, from: usize, to: usize) -> Result<()> {
    for step in from..to {
        let epoch = step / STEPS_PER_EPOCH + 1;
        let t = match run.scheduler.interval() {
            Interval::Step => step,
            Interval::Epoch => epoch - 1,
        };
        let ctx = StepContext {
            step,
            epoch,
            lr: run.scheduler.lr(t),
            loss: 1.0,
        };
        let mut g = grads(&run.params, step)?;
        let outcome = run
            .chain
            .apply(&mut g, &run.params, &ctx, &mut StepReport::default())?;
        match outcome {
            Outcome::Update => {
                apply_updates(&run.params, &g)?;
                run.chain.after_step(&run.params, &ctx)?;
            }
            Outcome::Skip(why) => run.skips.push(why),
            Outcome::Accumulate => run.skips.push("accumulating".into()),
        }
        if (step + 1) % STEPS_PER_EPOCH == 0 {
            let mut m = EpochMetrics::new();
            let loss: f64 = run
                .params
                .iter()
                .map(|p| {
                    p.var
                        .as_tensor()
                        .to_dtype(DType::F64)
                        .and_then(|t| t.sqr()?.sum_all()?.to_scalar::<f64>())
                })
                .sum::<candle_core::Result<f64>>()?;
            m.set("val_loss", loss);
            run.scheduler.on_epoch_end(&m)?;
        }
    }
    Ok(())
}

fn bits(m: &BTreeMap<String, Tensor>) -> Result<BTreeMap<String, Vec<u32>>> {
    m.iter()
        .map(|(k, t)| {
            let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            Ok((k.clone(), v.iter().map(|x| x.to_bits()).collect()))
        })
        .collect()
}

fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "rnnlab-optim-resume-{tag}-{}.safetensors",
        std::process::id()
    ))
}

/// Runs `total` steps straight, and `k` steps + save + load into fresh objects + the rest;
/// returns the straight run.
fn check_resume(tag: &str, config: &str, k: usize, total: usize) -> Result<Run> {
    let mut straight = fresh(config)?;
    train(&mut straight, 0, total)?;

    let mut first = fresh(config)?;
    train(&mut first, 0, k)?;
    let mut state = StateDict::new();
    state.extend_prefixed("chain", first.chain.state_dict()?);
    state.extend_prefixed("scheduler", first.scheduler.state_dict()?);
    let (state_path, params_path) = (temp_path(&format!("{tag}-state")), temp_path(tag));
    checkpoint::save(&state.tensors, &state_path)?;
    checkpoint::save(&first.params.to_map(), &params_path)?;
    drop(first);

    let mut resumed = fresh(config)?;
    resumed.params.load_map(&checkpoint::load(&params_path)?)?;
    let loaded = StateDict {
        tensors: checkpoint::load(&state_path)?,
    };
    resumed.chain.load_state_dict(&loaded.sub("chain"))?;
    resumed
        .scheduler
        .load_state_dict(&loaded.sub("scheduler"))?;
    let _ = std::fs::remove_file(&state_path);
    let _ = std::fs::remove_file(&params_path);
    train(&mut resumed, k, total)?;

    let want = bits(&straight.params.to_map())?;
    assert_eq!(
        bits(&resumed.params.to_map())?,
        want,
        "{tag}: parameters differ"
    );
    let before = bits(&fresh(config)?.params.to_map())?;
    assert_ne!(want, before, "{tag}: training changed nothing");
    let avg = straight.chain.averaged_params()?;
    let avg_resumed = resumed.chain.averaged_params()?;
    assert_eq!(avg.is_some(), avg_resumed.is_some());
    if let (Some(a), Some(b)) = (avg, avg_resumed) {
        assert_eq!(bits(&a)?, bits(&b)?, "{tag}: averaged weights differ");
    }
    assert_eq!(
        straight.scheduler.lr(total),
        resumed.scheduler.lr(total),
        "{tag}: schedules differ"
    );
    Ok(straight)
}

#[test]
fn adam_amsgrad_chain_with_warmup_cosine_and_ema_resumes_bitwise() -> Result<()> {
    let config = r#"
        transforms = [
            { type = "skip_nonfinite" },
            { type = "accumulate", steps = 2 },
            { type = "clip_global_norm", max_norm = 1.0 },
            { type = "weight_decay", value = 0.01, exclude = ["*bias*"] },
            { type = "adam", lr = 0.05, amsgrad = true },
            { type = "max_singular_value", bound = 0.9 },
            { type = "ema", decay = 0.9 },
        ]
        scheduler = { type = "warmup", steps = 4, start_factor = 0.1, inner = { type = "cosine", T_max = 12 } }
    "#;
    // k = 7 stops between the two micro-batches of an accumulation, after the skipped NaN step
    for k in [3, 7, 12] {
        let run = check_resume(&format!("adam-{k}"), config, k, 20)?;
        // the NaN step was dropped, accumulation skipped every other micro-batch, σ_max was bound
        assert!(run
            .skips
            .contains(&"nonfinite gradient in `fc.weight`".to_string()));
        assert_eq!(
            run.skips.iter().filter(|s| *s == "accumulating").count(),
            10
        );
        assert!(run.chain.averaged_params()?.is_some());
    }
    Ok(())
}

#[test]
fn sgd_rmsprop_adagrad_adamw_chains_with_swa_and_plateau_resume_bitwise() -> Result<()> {
    let optimizers = [
        r#"{ type = "sgd", lr = 0.05, momentum = 0.9, nesterov = true }"#,
        r#"{ type = "rmsprop", lr = 0.01, centered = true, momentum = 0.5 }"#,
        r#"{ type = "adagrad", lr = 0.1, lr_decay = 0.01 }"#,
        r#"{ type = "adamw", lr = 0.02 }"#,
    ];
    for (i, opt) in optimizers.iter().enumerate() {
        let config = format!(
            r#"
            transforms = [
                {{ type = "skip_nonfinite" }},
                {{ type = "clip_value", max_value = 0.8 }},
                {{ type = "adaptive_clip", clipping = 0.5 }},
                {opt},
                {{ type = "swa", start_epoch = 2 }},
            ]
            scheduler = {{ type = "reduce_on_plateau", monitor = "val_loss", mode = "min", factor = 0.5, patience = 0 }}
            "#
        );
        check_resume(&format!("opt{i}"), &config, 8, 20)?;
        let run = check_resume(&format!("opt{i}-epoch"), &config, 10, 20)?;
        assert!(run.scheduler.lr(0) < run.base_lr, "{opt}: no plateau");
    }
    Ok(())
}

#[test]
fn one_cycle_and_step_schedules_resume() -> Result<()> {
    for sched in [
        r#"{ type = "one_cycle", total_steps = 20 }"#,
        r#"{ type = "step", step_size = 1, gamma = 0.5 }"#,
        r#"{ type = "cosine_warm_restarts", T_0 = 3, T_mult = 2, interval = "step" }"#,
    ] {
        let config = format!(
            "transforms = [{{ type = \"sgd\", lr = 0.1, momentum = 0.5, dampening = 0.1 }}]\nscheduler = {sched}"
        );
        check_resume("sched", &config, 9, 20)?;
    }
    Ok(())
}
