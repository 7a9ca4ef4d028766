inception3b_branch4_0:
	subq	$568, %rsp
	movq	%rdi, (%rsp)
	movq	%rdx, 8(%rsp)
	movq	%rsi, 16(%rsp)
	movq	%rcx, 24(%rsp)
	shlq	$7, %rcx
	movq	$0, 32(%rsp)
	vxorps	%xmm0, %xmm0, %xmm0
	movq	%rcx, %rax
	sarq	$63, %rax
	andnq	%rcx, %rax, %rcx
	movslq	%r8d, %rax
	cmpq	%rax, %rcx
	movq	%rcx, 40(%rsp)
	movq	%rcx, 48(%rsp)
	vmovups	%zmm0, 56(%rsp)
	vmovups	%zmm0, 120(%rsp)
	vmovups	%zmm0, 184(%rsp)
	vmovups	%zmm0, 248(%rsp)
	vmovups	%zmm0, 312(%rsp)
	vmovups	%zmm0, 376(%rsp)
	vmovups	%zmm0, 440(%rsp)
	vmovups	%zmm0, 504(%rsp)
	cmovlq	%rcx, %rax
	cmpq	$2, %rax
	jl	.LBB26_2
	cmpq	$64, %rax
	movl	$64, %edx
	leaq	kernel.inception3b_branch4_0.par0.thunk(%rip), %rdi
	movq	%rsp, %rsi
	cmovbq	%rax, %rdx
	xorl	%ecx, %ecx
	vzeroupper
	callq	GOMP_parallel@PLT
	addq	$568, %rsp
	retq
.LBB26_2:
	movq	%rsp, %rdi
	vzeroupper
	callq	kernel.inception3b_branch4_0.par0.thunk
	addq	$568, %rsp
	retq
.Lfunc_end26:
	.size	kernel.inception3b_branch4_0, .Lfunc_end26-kernel.inception3b_branch4_0

	.p2align	4
	.type	kernel.inception3b_branch4_0.par0.thunk,@function
kernel.inception3b_branch4_0.par0.thunk:
	.cfi_startproc
	pushq	%rbp
	.cfi_def_cfa_offset 16
	pushq	%r15
	.cfi_def_cfa_offset 24
	pushq	%r14
	.cfi_def_cfa_offset 32
	pushq	%r13
	.cfi_def_cfa_offset 40
	pushq	%r12
	.cfi_def_cfa_offset 48
	pushq	%rbx
	.cfi_def_cfa_offset 56
	subq	$232, %rsp
	.cfi_def_cfa_offset 288
	.cfi_offset %rbx, -56
	.cfi_offset %r12, -48
	.cfi_offset %r13, -40
	.cfi_offset %r14, -32
	.cfi_offset %r15, -24
	.cfi_offset %rbp, -16
	movq	(%rdi), %rax
	movq	8(%rdi), %rdx
	movq	16(%rdi), %rcx
	movq	48(%rdi), %rbx
	movq	%rdi, 16(%rsp)
	movq	%rax, 40(%rsp)
	movq	32(%rdi), %rax
	movq	%rdx, 32(%rsp)
	movq	%rcx, 24(%rsp)
	movq	%rax, 48(%rsp)
	callq	omp_get_thread_num@PLT
	movl	%eax, %ebp
	callq	omp_get_num_threads@PLT
	movslq	%eax, %rdi
	movl	%eax, %esi
	movq	%rbx, 80(%rsp)
	leaq	-1(%rbx,%rdi), %rax
	movq	%rax, %rcx
	orq	%rdi, %rcx
	shrq	$32, %rcx
	je	.LBB27_1
	cqto
	idivq	%rdi
	movq	%rax, %r8
	jmp	.LBB27_3
.LBB27_1:
	xorl	%edx, %edx
	divl	%esi
	movl	%eax, %r8d
.LBB27_3:
	leaq	7(%r8), %rax
	testq	%r8, %r8
	movl	$1, %r9d
	movl	%esi, 12(%rsp)
	cmovnsq	%r8, %rax
	sarq	$3, %rax
	cmpq	$2, %rax
	cmovgeq	%rax, %r9
	testl	%esi, %esi
	jle	.LBB27_18
	movq	40(%rsp), %r11
	addq	$192, 32(%rsp)
	movslq	%ebp, %rax
	vxorps	%xmm0, %xmm0, %xmm0
	movq	%rdi, 72(%rsp)
	movq	%r8, 64(%rsp)
	movq	%r9, 96(%rsp)
	movq	%rax, 56(%rsp)
	leaq	128(%r11), %rcx
	leaq	3968(%r11), %r10
	leaq	576(%r11), %rax
	movq	%rcx, 224(%rsp)
	leaq	64(%r11), %rcx
	movq	%r10, 184(%rsp)
	leaq	4032(%r11), %r10
	movq	%rax, 136(%rsp)
	movq	%rcx, 216(%rsp)
	leaq	192(%r11), %rcx
	movq	%r10, 168(%rsp)
	movq	%rcx, 208(%rsp)
	movq	24(%rsp), %rcx
	leaq	4216(%rcx), %rsi
	leaq	132(%rcx), %rdx
	leaq	4348(%rcx), %r10
	leaq	208(%rcx), %rax
	movq	%rsi, 192(%rsp)
	leaq	3840(%r11), %rsi
	movq	%rdx, 200(%rsp)
	movq	%r10, 152(%rsp)
	movq	%rax, 128(%rsp)
	movq	%rsi, 176(%rsp)
	leaq	3904(%r11), %rsi
	movq	%rsi, 160(%rsp)
	leaq	136(%rcx), %rsi
	xorl	%ecx, %ecx
	movq	%rsi, 144(%rsp)
	movabsq	$-36028792732385280, %rsi
	jmp	.LBB27_5
	.p2align	4
.LBB27_17:
	movq	88(%rsp), %rcx
	movq	72(%rsp), %rdi
	movq	64(%rsp), %r8
	incq	%rcx
	cmpq	%rdi, %rcx
	je	.LBB27_18
.LBB27_5:
	movq	56(%rsp), %rax
	movq	%rcx, 88(%rsp)
	addq	%rcx, %rax
	movq	%rax, %rcx
	orq	%rdi, %rcx
	shrq	$32, %rcx
	je	.LBB27_6
	xorl	%edx, %edx
	divq	%rdi
	jmp	.LBB27_8
	.p2align	4
.LBB27_6:
	xorl	%edx, %edx
	divl	12(%rsp)
.LBB27_8:
	movq	%rdx, %rcx
	imulq	%r8, %rcx
	movq	80(%rsp), %rax
	movq	%r9, %rbx
	leaq	(%rcx,%r8), %rdi
	movq	16(%rsp), %r8
	cmpq	%rax, %rdi
	cmovgeq	%rax, %rdi
	lock		xaddq	%rbx, 56(%r8,%rdx,8)
	movq	%rcx, 112(%rsp)
	movq	%rdx, 120(%rsp)
	movq	%rdi, 104(%rsp)
	addq	%rcx, %rbx
	cmpq	%rdi, %rbx
	jl	.LBB27_9
	jmp	.LBB27_17
	.p2align	4
.LBB27_16:
	movq	96(%rsp), %r9
	movq	16(%rsp), %rax
	movq	120(%rsp), %rdx
	movq	%r9, %rbx
	lock		xaddq	%rbx, 56(%rax,%rdx,8)
	movq	104(%rsp), %rdi
	addq	112(%rsp), %rbx
	cmpq	%rdi, %rbx
	jge	.LBB27_17
.LBB27_9:
	leaq	(%rbx,%r9), %rcx
	movq	%rdi, %rax
	cmpq	%rdi, %rcx
	cmovlq	%rcx, %rax
	cmpq	%rbx, %rcx
	jle	.LBB27_16
	movq	48(%rsp), %rcx
	leaq	(%rcx,%rbx), %rdx
	movq	%rdx, %rdi
	shlq	$10, %rdi
	.p2align	4
.LBB27_11:
	movl	%edx, %r8d
	movq	%rdx, %rcx
	shrq	$7, %rcx
	andl	$127, %r8d
	movl	%edi, %r9d
	andl	$130048, %r9d
	movq	24(%rsp), %r12
	movabsq	$9223372036854644736, %r13
	imulq	$557056, %rcx, %rcx
	imulq	$4352, %r8, %rbp
	addq	%rcx, %rbp
	movq	128(%rsp), %rcx
	leaq	(%rcx,%rbp), %r8
	movq	%rdi, %rcx
	shrq	$17, %rcx
	addq	144(%rsp), %rbp
	shlq	$19, %rcx
	leaq	(%rcx,%r9,4), %r15
	movq	48(%rsp), %rcx
	leaq	(%rbx,%rcx), %r9
	movl	%r9d, %ecx
	movq	%r9, %r10
	andl	$127, %ecx
	shrq	$7, %r10
	shlq	$10, %r9
	imulq	$4352, %rcx, %r11
	imulq	$557056, %r10, %rcx
	movq	40(%rsp), %r10
	movl	%r9d, %r14d
	andl	$130048, %r14d
	andq	%r13, %r9
	leaq	(%r12,%r11), %r13
	leal	(,%r14,4), %r12d
	movl	$-8388608, (%rcx,%r13)
	addq	%r12, %r10
	vmovups	(%r10,%r9,4), %zmm1
	movq	224(%rsp), %r10
	addq	%r12, %r10
	vmovups	(%r10,%r9,4), %zmm2
	movq	216(%rsp), %r10
	addq	%r12, %r10
	addq	208(%rsp), %r12
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm2, %zmm1 {%k1}
	vmovups	%zmm1, 4(%rcx,%r13)
	vmovups	(%r12,%r9,4), %zmm2
	vmovups	(%r10,%r9,4), %zmm1
	movq	32(%rsp), %r10
	leaq	(%r13,%rcx), %r12
	addq	%r15, %r10
	addq	136(%rsp), %r15
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm2, %zmm1 {%k1}
	vmovups	%zmm1, 68(%rcx,%r13)
	movq	200(%rsp), %r13
	addq	%r11, %r13
	movl	$-8388608, (%rcx,%r13)
	xorl	%r13d, %r13d
	.p2align	4
.LBB27_12:
	movl	$-8388608, (%rbp,%r13)
	vmovups	-448(%r15), %zmm2
	vmovups	-576(%r15), %zmm1
	vmovups	-320(%r15), %zmm3
	vcmpunordps	%zmm0, %zmm2, %k1
	vcmpltps	%zmm2, %zmm1, %k2
	vcmpunordps	%zmm0, %zmm3, %k0
	korw	%k2, %k1, %k1
	vmovaps	%zmm2, %zmm1 {%k1}
	vcmpltps	%zmm3, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm3, %zmm1 {%k1}
	vmovups	%zmm1, 4(%rbp,%r13)
	vmovups	-384(%r15), %zmm4
	vmovups	-512(%r15), %zmm1
	vmovups	-256(%r15), %zmm5
	vcmpunordps	%zmm0, %zmm4, %k2
	vcmpltps	%zmm4, %zmm1, %k3
	vcmpunordps	%zmm0, %zmm5, %k1
	korw	%k3, %k2, %k2
	vcmpltps	%zmm3, %zmm2, %k3
	vmovaps	%zmm4, %zmm1 {%k2}
	vcmpltps	%zmm5, %zmm1, %k2
	korw	%k3, %k0, %k3
	korw	%k2, %k1, %k2
	vmovaps	%zmm3, %zmm2 {%k3}
	vmovaps	%zmm5, %zmm1 {%k2}
	vmovups	%zmm1, 68(%rbp,%r13)
	movq	%rsi, 132(%rbp,%r13)
	vmovups	-192(%r15), %zmm1
	vcmpunordps	%zmm0, %zmm1, %k2
	vcmpltps	%zmm1, %zmm2, %k0
	korw	%k0, %k2, %k3
	vmovaps	%zmm1, %zmm2 {%k3}
	vmovups	%zmm2, 140(%rbp,%r13)
	vcmpltps	%zmm5, %zmm4, %k3
	vmovups	-128(%r15), %zmm2
	korw	%k3, %k1, %k1
	vcmpltps	%zmm1, %zmm3, %k3
	vmovaps	%zmm5, %zmm4 {%k1}
	korw	%k3, %k2, %k2
	vmovaps	%zmm1, %zmm3 {%k2}
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm4, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm2, %zmm4 {%k1}
	vmovups	%zmm4, 204(%rbp,%r13)
	movq	%rsi, 268(%rbp,%r13)
	vmovups	-64(%r15), %zmm4
	vcmpunordps	%zmm0, %zmm4, %k1
	vcmpltps	%zmm4, %zmm3, %k2
	korw	%k2, %k1, %k1
	vcmpltps	%zmm2, %zmm5, %k2
	vmovaps	%zmm4, %zmm3 {%k1}
	vmovups	%zmm3, 276(%rbp,%r13)
	vmovups	(%r15), %zmm1
	korw	%k2, %k0, %k2
	addq	$384, %r15
	vmovaps	%zmm2, %zmm5 {%k2}
	vcmpunordps	%zmm0, %zmm1, %k1
	vcmpltps	%zmm1, %zmm5, %k0
	korw	%k0, %k1, %k1
	vmovaps	%zmm1, %zmm5 {%k1}
	vmovups	%zmm5, 340(%rbp,%r13)
	movl	$-8388608, 404(%rbp,%r13)
	addq	$408, %r13
	cmpq	$4080, %r13
	jne	.LBB27_12
	movq	192(%rsp), %r15
	movq	184(%rsp), %rbp
	movq	176(%rsp), %r13
	shll	$2, %r14d
	addq	%r11, %r15
	addq	152(%rsp), %r11
	movl	$-8388608, (%rcx,%r15)
	leaq	(%rbp,%r14), %r15
	vmovups	(%r15,%r9,4), %zmm1
	leaq	(%r13,%r14), %r15
	vmovups	(%r15,%r9,4), %zmm2
	movq	168(%rsp), %r15
	addq	%r14, %r15
	addq	160(%rsp), %r14
	vcmpunordps	%zmm0, %zmm1, %k0
	vcmpltps	%zmm1, %zmm2, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm1, %zmm2 {%k1}
	vmovups	%zmm2, 4220(%r12)
	vmovups	(%r15,%r9,4), %zmm1
	vmovups	(%r14,%r9,4), %zmm2
	vcmpunordps	%zmm0, %zmm1, %k0
	vcmpltps	%zmm1, %zmm2, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm1, %zmm2 {%k1}
	vmovups	%zmm2, 4284(%r12)
	movl	$-8388608, (%rcx,%r11)
	xorl	%ecx, %ecx
	.p2align	4
.LBB27_14:
	vmovups	-204(%r8), %zmm2
	vmovups	-208(%r8), %zmm1
	vmovups	-200(%r8), %zmm3
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vcmpunordps	%zmm0, %zmm3, %k0
	vmovaps	%zmm2, %zmm1 {%k1}
	vcmpltps	%zmm3, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm3, %zmm1 {%k1}
	vmovaps	%zmm1, -192(%r10,%rcx)
	vmovups	-140(%r8), %zmm2
	vmovups	-144(%r8), %zmm1
	vmovups	-136(%r8), %zmm3
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vcmpunordps	%zmm0, %zmm3, %k0
	vmovaps	%zmm2, %zmm1 {%k1}
	vcmpltps	%zmm3, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm3, %zmm1 {%k1}
	vmovaps	%zmm1, -128(%r10,%rcx)
	vmovups	-68(%r8), %zmm2
	vmovups	-72(%r8), %zmm1
	vmovups	-64(%r8), %zmm3
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vcmpunordps	%zmm0, %zmm3, %k0
	vmovaps	%zmm2, %zmm1 {%k1}
	vcmpltps	%zmm3, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm3, %zmm1 {%k1}
	vmovaps	%zmm1, -64(%r10,%rcx)
	vmovups	-4(%r8), %zmm2
	vmovups	-8(%r8), %zmm1
	vmovups	(%r8), %zmm3
	addq	$272, %r8
	vcmpunordps	%zmm0, %zmm2, %k0
	vcmpltps	%zmm2, %zmm1, %k1
	korw	%k1, %k0, %k1
	vcmpunordps	%zmm0, %zmm3, %k0
	vmovaps	%zmm2, %zmm1 {%k1}
	vcmpltps	%zmm3, %zmm1, %k1
	korw	%k1, %k0, %k1
	vmovaps	%zmm3, %zmm1 {%k1}
	vmovaps	%zmm1, (%r10,%rcx)
	addq	$256, %rcx
	cmpq	$4096, %rcx
	jne	.LBB27_14
	incq	%rbx
	incq	%rdx
	addq	$1024, %rdi
	cmpq	%rax, %rbx
	jne	.LBB27_11
	jmp	.LBB27_16
.LBB27_18:
	addq	$232, %rsp
	.cfi_def_cfa_offset 56
	popq	%rbx
	.cfi_def_cfa_offset 48
	popq	%r12
	.cfi_def_cfa_offset 40
	popq	%r13
	.cfi_def_cfa_offset 32
	popq	%r14
	.cfi_def_cfa_offset 24
	popq	%r15
	.cfi_def_cfa_offset 16
	popq	%rbp
	.cfi_def_cfa_offset 8
	vzeroupper
	retq
