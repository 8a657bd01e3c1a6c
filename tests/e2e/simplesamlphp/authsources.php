<?php
/* The test users: exampleauth:UserPass, password = the username. */
$config = [
    'admin' => ['core:AdminPassword'],
    'test-users' => [
        'exampleauth:UserPass',
        'bsimon:bsimon' => [
            'uid' => ['bsimon'],
            'email' => ['B.Simon@contoso.com'],
            'displayName' => ['B.Simon'],
            'eduPersonAffiliation' => ['staff', 'member'],
        ],
        'ajones:ajones' => [
            'uid' => ['ajones'],
            'email' => ['A.Jones@contoso.com'],
            'displayName' => ['A.Jones'],
            'eduPersonAffiliation' => ['member'],
        ],
    ],
];
