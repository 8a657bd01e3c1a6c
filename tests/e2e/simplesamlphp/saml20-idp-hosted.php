<?php
/* The IdP itself: entity ID <baseurlpath>saml2/idp/metadata.php. */
$metadata['__DYNAMIC:1__'] = [
    'host' => '__DEFAULT__',
    'privatekey' => 'idp.key',
    'certificate' => 'idp.crt',
    'auth' => 'test-users',
    // Sign the LogoutRequests and LogoutResponses it sends (off by default in 1.19).
    'sign.logout' => true,
    // The emailAddress NameID is the user's email.
    'simplesaml.nameidattribute' => 'email',
    'authproc' => [
        // A persistent NameID (a salted hash of uid, per SP), used when an SP asks for one.
        10 => ['class' => 'saml:PersistentNameID', 'attribute' => 'uid'],
    ],
];
