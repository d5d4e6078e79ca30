//! The Kim CNN against PyTorch (logits and the gradient of every parameter, from a state_dict
//! saved by torch) and against finite differences, with both kernels; the fused op against the
//! candle-ops reference in training; the embedding dropout against the model written as loops.
//!
//! `tests/fixtures/cnn.safetensors` and the golden values in [`GOLDEN`] were produced once, with
//! torch 2.15.0 and safetensors 0.8.0 on CPU, by this script (run from `crates/models/tests`); it
//! is not a test dependency. rnnlab masks the padding (a row's windows read only its true tokens,
//! and zeros past its end when it is shorter than a filter); the script computes that function one
//! row at a time, so no mask appears on the torch side. The `full` case (no padding) is also
//! checked there against the plain batched Kim CNN.
//!
// # Generates crates/models/tests/fixtures/cnn.safetensors and prints the expected logits and gradients.
// # Run from crates/models/tests: python3 gen_cnn_golden.py (torch, safetensors).
// import torch, torch.nn as nn
// from safetensors.torch import save_file
//
// class M(nn.Module):  # vocab 12, E = 5, widths 2 and 3, 4 maps each, 3 classes
//     def __init__(s):
//         super().__init__()
//         s.embedding = nn.Embedding(12, 5)
//         s.convs = nn.ModuleList(nn.Conv1d(5, 4, w) for w in (2, 3))
//         s.fc = nn.Linear(8, 3)
//     def forward(s, ids, lens):
//         # rnnlab's function, one row at a time: only the row's true tokens, zero-padded on the
//         # right to the widest filter; a row shorter than a filter has one window.
//         rows = []
//         for x, l in zip(ids, lens):
//             e = s.embedding(x[:l]).t().unsqueeze(0)  # [1, E, l]
//             e = nn.functional.pad(e, (0, max(0, 3 - l)))
//             rows.append(torch.cat([c(e)[:, :, :max(l - c.kernel_size[0] + 1, 1)].relu().amax(2)
//                                    for c in s.convs], 1))
//         return s.fc(torch.cat(rows, 0))
//
// torch.manual_seed(7)
// m = M()
// save_file({k: v.contiguous() for k, v in m.state_dict().items()}, 'fixtures/cnn.safetensors')
// m = m.double()
// cases = [  # name, ids (padding holds 7, a real token), lengths, labels
//     ('full', [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 1], [11, 4, 6, 8, 10, 3]], [6, 6, 6], [0, 1, 2]),
//     ('padded', [[3, 5, 7, 2, 9, 4], [8, 1, 6, 11, 7, 7], [6, 7, 7, 7, 7, 7], [2, 10, 7, 7, 7, 7]],
//      [6, 4, 1, 2], [2, 0, 1, 1]),
// ]
// for name, ids, lens, labels in cases:
//     m.zero_grad()
//     y = m(torch.tensor(ids), lens)
//     nn.functional.cross_entropy(y, torch.tensor(labels)).backward()
//     if name == 'full':  # the plain Kim CNN over whole rows gives the same logits
//         e = m.embedding(torch.tensor(ids)).transpose(1, 2)
//         plain = m.fc(torch.cat([c(e).relu().amax(2) for c in m.convs], 1))
//         assert torch.allclose(plain, y, rtol=0, atol=1e-14)
//     for k, t in [('logits', y)] + [(k, p.grad) for k, p in m.named_parameters()]:
//         v = t.flatten().tolist()
//         print(f'{name} {k}')
//         for i in range(0, len(v), 4):
//             print('   ', ' '.join(f'{x:.15e}' for x in v[i:i + 4]))

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, batch, build_model, registry, values};
use rnnlab_core::{checkpoint, dropout_mask, seeded, Batch, Grads, Model};

/// What the script printed: per case, the logits and then each parameter's gradient, flattened
/// in row-major order (a name line, then its values).
const GOLDEN: &str = "
full logits
    5.911946950168916e-01 2.604081448053381e-01 -4.856928845775729e-01 1.064936809088492e+00
    2.169851697983313e-01 -4.977232495743480e-01 6.923464798413547e-01 2.530699776008349e-01
    -3.116532546201598e-01
full embedding.weight
    0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00
    0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00
    0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00
    0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00 -1.464872845909313e-02
    1.098882888257122e-02 1.600492069496463e-02 -9.009659087426188e-03 1.046163941024886e-02
    2.956437201821435e-02 -3.121407957906928e-02 2.665977811603779e-02 2.230759224636332e-02
    2.999693814921041e-03 6.230229059779793e-03 -4.766883841691896e-03 -4.125199044353450e-02
    7.400138985876546e-03 -3.402178502240847e-02 3.427575339070728e-02 -4.068957995857584e-02
    -5.035342418021573e-02 2.849155615262424e-02 -1.992983343770880e-02 2.669079026231879e-02
    4.810694138617790e-03 -2.214945887210995e-02 2.158063195965015e-03 -2.426884769469606e-02
    -7.386313569682518e-02 8.892137343067938e-02 -5.086486067025224e-02 -5.245531936436875e-02
    -2.819371065051925e-02 -1.089001751061614e-02 1.260593243838520e-02 5.645902622149451e-02
    3.277224986110390e-03 3.117819043934837e-02 -2.065447589660595e-03 -1.556181751372258e-03
    5.235353292803540e-02 -2.749353387295899e-02 2.799004579362127e-02 -1.685017803274448e-02
    -1.714848095161256e-02 2.162579450200749e-02 -2.449147926240838e-03 1.414931628829777e-02
full convs.0.weight
    1.624363679058626e-01 -2.915714091035619e-02 -9.360687325017061e-02 3.258267408191337e-03
    -1.154644329900315e-01 1.223884668549046e-02 7.109801517425116e-02 -1.091202388752633e-01
    4.494156852634774e-02 2.471793847562176e-02 1.804248932614633e-01 -1.159211189102226e-01
    8.910373115983369e-02 1.007002237237135e-01 -5.188516329632015e-02 1.270282350862850e-01
    -8.094329914698192e-02 -8.142042580360158e-02 -4.725419577204670e-02 -4.206454450319858e-02
    4.233850078841550e-02 -4.499207041404520e-02 -6.585821252588241e-02 8.158811985783657e-02
    7.723774459566209e-02 -7.945106553667300e-02 1.017646834245917e-01 -5.670098318984130e-02
    5.147383092302180e-03 1.416862371942225e-02 -1.156889427360488e-01 -2.139086852038761e-01
    -2.448276186355842e-02 1.455556279896938e-01 -1.608861744151410e-02 1.813935897445623e-01
    -1.381910959283739e-01 -1.137994733043452e-01 1.405187624409346e-02 -6.575211681972284e-02
full convs.0.bias
    -4.880188478374067e-02 7.489663132498729e-02 -8.226941283772979e-02 9.061018321077211e-02
full convs.1.weight
    -2.113356538276212e-01 -1.877662929523472e-01 -5.711969219682227e-02 -1.146426348410794e-01
    1.368879304587112e-01 1.717325495593413e-01 1.656603848615032e-03 1.690582324917730e-01
    -1.056254450796054e-01 -7.728245388450995e-02 -1.087612314449109e-01 -7.832498315512514e-02
    3.529242351292446e-02 -6.015266883900179e-02 -3.421794158047436e-02 3.856545478383579e-02
    -6.320165378711107e-02 8.856818483274898e-02 5.208985414210359e-02 1.340635912197846e-01
    -6.013944056453326e-02 -8.055722061831184e-03 4.526826061313583e-02 -1.373747821131146e-02
    -4.147425441766557e-02 -1.250955325086749e-02 6.606975654181894e-02 -3.321351558206781e-02
    -4.439233185993882e-02 -8.917647323393379e-03 -2.029750073330865e-02 -9.065620546134290e-02
    -1.861825491496563e-02 -4.618682907901406e-02 8.393325682011415e-02 1.173496236348711e-02
    -1.583456149462217e-02 1.061628510626514e-01 -4.675538126868760e-02 -1.603695318821604e-02
    -6.836390137599033e-02 -5.531547765004792e-02 -2.787098407912608e-03 -3.442370866214490e-02
    3.728016665301911e-04 -2.516566282559649e-01 4.839815201314242e-02 4.153699396099275e-02
    1.063442656023189e-01 -2.662289933250336e-02 2.642691661826671e-01 1.510583134953374e-01
    2.951235524529737e-02 -1.484623317774021e-01 -9.295488860959773e-02 2.050259321176902e-01
    -2.039363466009262e-01 -5.933569733973215e-02 -4.375201913168737e-02 -2.720679039464267e-02
full convs.1.bias
    9.059387744788730e-02 3.738488845871526e-02 6.469662884265563e-02 7.048095192824121e-02
full fc.weight
    1.501109039256801e-01 -7.512160155959388e-03 1.210575919027397e-01 1.777027756623119e-01
    5.463649936397016e-02 2.169740358845617e-01 3.768634231081921e-01 2.982074659692704e-01
    -8.908988166800649e-03 -4.484011234723154e-02 4.604551408296735e-02 -6.928229747709407e-02
    -1.110674797134400e-01 -1.044125945852233e-02 -2.149704156468126e-01 -7.909515109600354e-02
    -1.412019157588793e-01 5.235227250319098e-02 -1.671031059857071e-01 -1.084204781852177e-01
    5.643098034946995e-02 -2.065327764260393e-01 -1.618930074613795e-01 -2.191123148732669e-01
full fc.bias
    1.978351620226087e-01 -2.303989624947224e-02 -1.747952657731364e-01
padded logits
    4.308132985899334e-01 3.490579024045244e-01 -7.297796309138563e-01 2.718342234086478e-01
    6.285194886897313e-01 -3.533559998885819e-01 1.555691465442063e-01 2.674295451963923e-01
    -1.584025751578432e-01 1.607314673105180e-01 3.429635639289558e-01 -2.231980285795670e-01
padded embedding.weight
    0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00 0.000000000000000e+00
    0.000000000000000e+00 1.601069525442777e-02 1.228338673244854e-02 -4.108510358876673e-02
    -5.939040245209193e-05 -2.374796354043292e-02 -1.452618026123163e-02 -4.128565457811165e-03
    3.983652661109643e-05 -4.976882617029254e-04 1.822934662356789e-02 5.121842183958112e-03
    -1.426437584575537e-02 -2.223827884684283e-02 1.014526081197668e-02 -2.396668330995632e-02
    -7.854264959249478e-03 1.144157926384261e-02 1.614613060690530e-02 1.083497145702089e-03
    -1.880886201472412e-02 -3.519938556946436e-02 6.266596299104350e-03 2.437264305365165e-03
    -3.773198335121025e-02 4.274256722578169e-02 5.673788112939882e-03 -1.308148295669023e-03
    -1.959166371220717e-02 8.217632088280729e-03 1.931132606447125e-02 -1.160336479521396e-02
    -2.813399231435614e-02 3.889340370501377e-02 -1.354007458151450e-02 4.004842297564080e-02
    1.387890233143266e-02 -1.512890581364332e-02 2.436303810573513e-02 1.073719371060873e-02
    -5.437672195372088e-03 2.153183436834443e-02 -1.571606647681718e-02 -9.188132124493601e-03
    6.393958839671912e-03 5.161762281085629e-03 7.715354193036392e-04 2.585835105903014e-03
    1.428898202341873e-02 5.071028766157254e-03 1.210089828764528e-03 -5.715521753166352e-03
    2.503548556258995e-03 -3.581368134279740e-03 2.734023724077467e-03 -7.581245306096009e-03
padded convs.0.weight
    -2.975492234162325e-02 3.958242251084929e-02 9.605970232439916e-02 -7.306793593670254e-02
    6.385699943925000e-02 -1.007803823109910e-02 -1.067355981888179e-01 1.091758395873409e-01
    -4.125844266720255e-02 -2.837285037923058e-02 2.527613094934397e-02 -2.697724539366365e-01
    2.131246904391407e-01 -1.123417335034401e-01 4.052344830903994e-02 7.768799456662845e-02
    2.419699858264007e-01 9.724117391990417e-02 -7.912388298897904e-02 7.109290401057375e-02
    -6.257640090041192e-02 3.782088779577267e-03 6.593715374752090e-02 -3.282111831024453e-02
    7.565218536815649e-02 -3.782568850488134e-02 -3.964821183884170e-02 4.523203091708654e-02
    -2.676265071371870e-02 -2.183645786333128e-02 3.503749826611235e-03 8.273647608191512e-02
    -8.813186677407403e-02 1.314837687322391e-01 3.157508645036160e-02 8.773381034227744e-02
    -3.616058995454571e-02 -5.704769536363290e-02 4.250848490763744e-02 -2.562609767939809e-02
padded convs.0.bias
    1.353563656202800e-02 -1.173769487798327e-01 4.129704819455318e-02 3.455362506237700e-02
padded convs.1.weight
    1.420735800691171e-01 3.203013896581534e-02 2.129428567204227e-01 -1.027135053345040e-01
    -1.472972903750223e-01 1.251112167418950e-01 -1.200903255413493e-02 -1.598191355934939e-02
    -1.063648711755750e-01 1.435646669518855e-01 -1.835194756363190e-01 -9.813201960980172e-02
    -2.159440911967761e-02 6.204190075190113e-02 -5.525139355551781e-02 9.235538009894487e-02
    -3.336319845261944e-02 4.782119757609955e-02 -2.055702580744936e-02 1.042803668395280e-02
    1.276115017877247e-02 -6.542286184138971e-02 4.295773830414299e-02 -8.203526831736811e-04
    1.571448205334160e-02 -7.750790211862937e-03 3.541812525269078e-03 3.943753908307941e-03
    2.165364230242806e-02 -1.628284951646244e-03 2.473522847596653e-02 7.322876121228522e-02
    -9.838251553088151e-03 -9.285206831562587e-02 4.796109305407256e-02 1.528328294130164e-02
    -4.970460426459417e-02 -2.433317956861140e-03 2.651592088310841e-02 -4.727114006605954e-02
    -5.005685733746452e-02 3.569595711855703e-02 3.563125612249321e-02 -8.715482059268980e-03
    3.989520954290919e-03 2.757961095299616e-02 -2.810126033758157e-02 1.264529455680415e-01
    -2.360624330398337e-01 6.504621744045636e-02 1.284898916559873e-01 -1.661100462549759e-01
    8.613634801677497e-02 5.418539998331522e-03 9.689216631585462e-02 -8.921581216850129e-02
    4.061101946336087e-03 6.492700554512278e-02 5.091586409929922e-02 -1.620515170141744e-02
padded convs.1.bias
    3.041871387349833e-02 -1.032423012613726e-02 1.172653639554197e-02 -1.550215215049165e-02
padded fc.weight
    -1.250328271964440e-01 3.349935126502165e-02 5.221583479791865e-02 4.980932403556047e-02
    6.175453508803967e-02 5.981752742753028e-02 1.527027212658517e-02 -4.738382262457881e-03
    8.853476955206234e-02 3.086956284440649e-02 1.762312484461824e-01 1.040070113205565e-01
    1.461224189521126e-01 1.119845926576404e-01 5.569897303780529e-02 1.394040338858425e-02
    3.649805764438167e-02 -6.436891410942815e-02 -2.284470832441010e-01 -1.538163353561170e-01
    -2.078769540401523e-01 -1.718021200851706e-01 -7.096924516439046e-02 -9.202021126126361e-03
padded fc.bias
    1.207461946637631e-01 -7.415172595847491e-02 -4.659446870528815e-02
";

/// The fixture's model, as a `[model]` table, with each kernel.
fn model_table(kernel: &str) -> String {
    format!("type = \"cnn\"\nwidths = [2, 3]\nmaps = 4\nembedding_dim = 5\nkernel = \"{kernel}\"")
}

const KERNELS: [&str; 2] = ["fused", "reference"];

/// The golden entries of `case`: (name, values), in the printed order.
fn golden(case: &str) -> Vec<(String, Vec<f64>)> {
    let mut out: Vec<(String, Vec<f64>)> = Vec::new();
    for line in GOLDEN.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with(' ') {
            let v = line.split_whitespace().map(|x| x.parse::<f64>().unwrap());
            out.last_mut().expect("a name line first").1.extend(v);
        } else {
            out.push((line.to_string(), Vec::new()));
        }
    }
    out.into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(case)?.trim().to_string(), v)))
        .collect()
}

/// The script's batches: (case, ids, lengths, labels); the padding holds 7, a real token.
fn cases() -> Vec<(&'static str, Batch)> {
    let make = |ids: Vec<Vec<u32>>, lengths: Vec<usize>, labels: Vec<u32>| {
        let mut b = batch(&ids, 0);
        b.lengths = lengths;
        b.labels = Tensor::new(labels, &Device::Cpu).unwrap();
        b
    };
    vec![
        (
            "full",
            make(
                vec![
                    vec![1, 2, 3, 4, 5, 6],
                    vec![7, 8, 9, 10, 11, 1],
                    vec![11, 4, 6, 8, 10, 3],
                ],
                vec![6, 6, 6],
                vec![0, 1, 2],
            ),
        ),
        (
            "padded",
            make(
                vec![
                    vec![3, 5, 7, 2, 9, 4],
                    vec![8, 1, 6, 11, 7, 7],
                    vec![6, 7, 7, 7, 7, 7],
                    vec![2, 10, 7, 7, 7, 7],
                ],
                vec![6, 4, 1, 2],
                vec![2, 0, 1, 1],
            ),
        ),
    ]
}

/// Logits and gradients of the fixture's model in `dtype` against torch's, within `rtol`/`atol`.
fn check_against_torch(kernel: &str, dtype: DType, rtol: f64, atol: f64) {
    let r = registry();
    let model = build_model(&r, &model_table(kernel), 12, 3, dtype, 0).unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let map = checkpoint::load(&dir.join("cnn.safetensors")).unwrap();
    model.params().load_map(&map).unwrap();
    for (case, b) in cases() {
        let expected = golden(case);
        let what = |k: &str| format!("{kernel} {case} {dtype:?} {k}");
        let logits = model.forward(&b, false, &mut seeded(0)).unwrap();
        let (name, v) = &expected[0];
        assert_eq!(name, "logits");
        let want = Tensor::from_vec(v.clone(), logits.dims(), &Device::Cpu).unwrap();
        assert_close(&logits, &want, rtol, atol, &what("logits"));
        let loss = model.loss(&logits, &b.labels).unwrap();
        let grads = Grads::from_backward(model.params(), &mut loss.backward().unwrap()).unwrap();
        let names: Vec<&str> = grads.iter().map(|(k, _)| k).collect();
        let golden_names: Vec<&str> = expected[1..].iter().map(|(k, _)| k.as_str()).collect();
        // Every parameter is trainable, and torch has the same ones in the same order.
        assert_eq!(names, golden_names, "{case}");
        for ((name, g), (_, v)) in grads.iter().zip(&expected[1..]) {
            let want = Tensor::from_vec(v.clone(), g.dims(), &Device::Cpu).unwrap();
            assert_close(g, &want, rtol, atol, &what(name));
        }
    }
}

#[test]
fn logits_and_gradients_match_torch_f64() {
    for kernel in KERNELS {
        check_against_torch(kernel, DType::F64, 1e-10, 1e-12);
    }
}

#[test]
fn logits_and_gradients_match_torch_f32() {
    for kernel in KERNELS {
        check_against_torch(kernel, DType::F32, 1e-4, 1e-6);
    }
}

#[test]
fn gradients_match_finite_differences() {
    for kernel in KERNELS {
        check_finite_differences(kernel);
    }
}

/// Central differences of the loss against backward, for every entry of every parameter.
fn check_finite_differences(kernel: &str) {
    let r = registry();
    let src = format!(
        "type = \"cnn\"\nwidths = [1, 2, 4]\nmaps = 3\nembedding_dim = 4\nkernel = \"{kernel}\""
    );
    let model = build_model(&r, &src, 10, 3, DType::F64, 5).unwrap();
    // Lengths 7, 3 (shorter than the widest filter), 1 and 4; the padding holds real tokens.
    let mut b = batch(
        &[
            vec![1, 4, 2, 8, 5, 7, 3],
            vec![9, 6, 2, 9, 9, 9, 9],
            vec![5, 9, 9, 9, 9, 9, 9],
            vec![3, 8, 1, 6, 9, 9, 9],
        ],
        0,
    );
    b.lengths = vec![7, 3, 1, 4];
    b.labels = Tensor::new(&[2u32, 0, 1, 1], &Device::Cpu).unwrap();
    let loss = || {
        let logits = model.forward(&b, false, &mut seeded(0)).unwrap();
        model.loss(&logits, &b.labels).unwrap()
    };
    let grads = Grads::from_backward(model.params(), &mut loss().backward().unwrap()).unwrap();
    assert_eq!(grads.len(), model.params().len());
    let eps = 1e-6;
    let mut checked = 0;
    for (p, (name, g)) in model.params().iter().zip(grads.iter()) {
        assert_eq!(p.name, name);
        let analytic = values(g);
        let base = values(p.var.as_tensor());
        let mut nonzero = 0;
        for i in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                p.var
                    .set(&Tensor::from_vec(v, p.var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            at(0.0);
            let a = analytic[i];
            assert!(
                (a - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "{kernel}: d loss / d {name}[{i}] = {a}, finite differences {numeric}"
            );
            nonzero += usize::from(numeric.abs() > 1e-8);
            checked += 1;
        }
        // The check means something only where the loss depends on the parameter.
        assert!(nonzero > 0, "{kernel}: {name}: no entry moves the loss");
    }
    assert!(checked > 100, "{checked}");
}

/// A batch of rows with the given lengths, padded to `t` with id 0; no id repeats within a row
/// (so no two windows tie for a max), labels cycle through 3 classes.
fn distinct_rows(lengths: &[usize], t: usize, vocab: u32) -> Batch {
    let rows: Vec<Vec<u32>> = lengths
        .iter()
        .enumerate()
        .map(|(r, &l)| {
            (0..l as u32)
                .map(|k| 1 + (r as u32 * 7 + k * 13) % (vocab - 1))
                .collect()
        })
        .collect();
    let mut b = batch(&rows, 0);
    if b.ids.dims()[1] < t {
        let pad =
            Tensor::zeros((rows.len(), t - b.ids.dims()[1]), DType::U32, &Device::Cpu).unwrap();
        b.ids = Tensor::cat(&[&b.ids, &pad], 1).unwrap();
    }
    let labels: Vec<u32> = (0..rows.len() as u32).map(|i| i % 3).collect();
    b.labels = Tensor::new(labels, &Device::Cpu).unwrap();
    b
}

#[test]
fn fused_matches_reference_in_training() {
    let r = registry();
    // Rows shorter than every filter, than some, and longer than all; dropout on both places.
    let b = distinct_rows(&[12, 1, 4, 2, 9, 5, 3, 11, 6], 12, 50);
    for (dtype, rtol, atol) in [(DType::F64, 1e-9, 1e-12), (DType::F32, 1e-4, 1e-6)] {
        let run = |kernel: &str| {
            let src = format!(
                "type = \"cnn\"\nwidths = [2, 3, 5]\nmaps = 16\nembedding_dim = 8\n\
                 embedding_dropout = 0.3\ndropout = 0.5\nkernel = \"{kernel}\""
            );
            let m = build_model(&r, &src, 50, 3, dtype, 4).unwrap();
            let logits = m.forward(&b, true, &mut seeded(11)).unwrap();
            let loss = m.loss(&logits, &b.labels).unwrap();
            let grads = Grads::from_backward(m.params(), &mut loss.backward().unwrap()).unwrap();
            (logits, grads)
        };
        let (fused_logits, fused_grads) = run("fused");
        let (ref_logits, ref_grads) = run("reference");
        assert_close(
            &fused_logits,
            &ref_logits,
            rtol,
            atol,
            &format!("{dtype:?} logits"),
        );
        assert_eq!(fused_grads.len(), 9);
        for ((name, f), (_, g)) in fused_grads.iter().zip(ref_grads.iter()) {
            assert_close(f, g, rtol, atol, &format!("{dtype:?} {name}"));
            assert!(values(g).iter().any(|v| *v != 0.0), "{name}: all zero");
        }
    }
}

/// The model's function written out with loops over the parameters (f64), the embedded tokens
/// multiplied by `emb_mask` `[B·T·E]`; no dropout before the output layer.
fn loop_logits(model: &dyn Model, b: &Batch, emb_mask: &[f64]) -> Vec<f64> {
    let p = |k: &str| values(&model.params().get(k).unwrap().var.as_tensor().clone());
    let dims = |k: &str| model.params().get(k).unwrap().var.dims().to_vec();
    let (table, e) = (p("embedding.weight"), dims("embedding.weight")[1]);
    let ids: Vec<u32> = b.ids.flatten_all().unwrap().to_vec1().unwrap();
    let t = b.ids.dims()[1];
    let (fc, fc_b, classes) = (p("fc.weight"), p("fc.bias"), dims("fc.weight")[0]);
    let mut out = Vec::new();
    for (row, &l) in b.lengths.iter().enumerate() {
        let x = |pos: usize, c: usize| {
            let i = row * t + pos;
            if pos < l {
                table[ids[i] as usize * e + c] * emb_mask[i * e + c]
            } else {
                0.0
            }
        };
        let mut feats = Vec::new();
        for i in 0.. {
            let Some(wd) = model.params().get(&format!("convs.{i}.weight")) else {
                break;
            };
            let [maps, _, w] = wd.var.dims().try_into().unwrap();
            let (wv, bv) = (values(wd.var.as_tensor()), p(&format!("convs.{i}.bias")));
            for j in 0..maps {
                let mut best = f64::NEG_INFINITY;
                for start in 0..(l + 1).saturating_sub(w).max(1) {
                    let mut z = bv[j];
                    for k in 0..w {
                        for c in 0..e {
                            z += wv[(j * e + c) * w + k] * x(start + k, c);
                        }
                    }
                    best = best.max(z);
                }
                feats.push(best.max(0.0));
            }
        }
        for k in 0..classes {
            let d = feats.len();
            out.push(fc_b[k] + (0..d).map(|i| fc[k * d + i] * feats[i]).sum::<f64>());
        }
    }
    out
}

#[test]
fn embedding_dropout_drops_embedded_tokens_with_the_runs_generator() {
    let r = registry();
    let b = distinct_rows(&[7, 2, 5, 1], 7, 20);
    let (rows, t, e) = (4, 7, 6);
    for kernel in KERNELS {
        let src = format!(
            "type = \"cnn\"\nwidths = [2, 4]\nmaps = 5\nembedding_dim = {e}\n\
             embedding_dropout = 0.4\ndropout = 0.0\nkernel = \"{kernel}\""
        );
        let m = build_model(&r, &src, 20, 3, DType::F64, 8).unwrap();
        // The first numbers the forward pass draws are the embedding's mask.
        let mask =
            dropout_mask(&mut seeded(5), &[rows, t, e], 0.4, DType::F64, &Device::Cpu).unwrap();
        let mask = values(&mask);
        assert!(mask.contains(&0.0) && mask.iter().any(|v| *v > 1.0));
        let train = m.forward(&b, true, &mut seeded(5)).unwrap();
        let want =
            Tensor::from_vec(loop_logits(m.as_ref(), &b, &mask), (rows, 3), &Device::Cpu).unwrap();
        assert_close(&train, &want, 1e-10, 1e-12, &format!("{kernel} train"));
        // Evaluation drops nothing.
        let eval = m.forward(&b, false, &mut seeded(5)).unwrap();
        let want = Tensor::from_vec(
            loop_logits(m.as_ref(), &b, &vec![1.0; rows * t * e]),
            (rows, 3),
            &Device::Cpu,
        )
        .unwrap();
        assert_close(&eval, &want, 1e-10, 1e-12, &format!("{kernel} eval"));
    }
}
